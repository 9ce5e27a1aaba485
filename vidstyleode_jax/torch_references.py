"""The PyTorch paths `bench --part=trainable` times beside ours: built in bench's process, or in a process of their own.

Two references exist: "torch" (`torch_trainable.TrainablePath`, our parameter values; `--compare_torch`) and
"official" (the official repository's modules, `official_trainable.py`; `--compare_official`). Each program is a
closure returning (W+ or None, ODE nfe), timed where it runs by `clocked`.

By default the references run in a worker process of their own (`Worker`), each program when bench asks for it,
so that ours and theirs still alternate step by step while each process keeps its own heap: ours keeps freed host
memory as training does (host_memory.py), PyTorch runs under glibc's defaults as it does for its users. In one
process the two would share one heap, and with it kept our step still took about 175,000 page faults per step
(docs/performance.md §1); `--references_in_process` keeps that older arrangement, both under glibc's defaults.
Training and inference never import this module; it imports torch only when a reference is built.
"""

import multiprocessing
import time

import jax
import numpy as np
from absl import app

from vidstyleode_jax import official_trainable
from vidstyleode_jax.models import vidstyleode

# Wall-clock seconds, and CPU seconds of the calling process (all its threads).
CLOCKS = {"s": time.perf_counter, "cpu_s": time.process_time}


def clocked(fn, *args):
  """(fn(*args), {clock: seconds it took})."""
  start = {clock: read() for clock, read in CLOCKS.items()}
  result = fn(*args)
  return result, {clock: read() - start[clock] for clock, read in CLOCKS.items()}


def import_torch(flag):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    raise app.UsageError(f"{flag} needs PyTorch ({e}); install it with pip install torch") from None
  return torch


def torch_programs(config, params, inputs):
  """The PyTorch trainable path with our parameter values: ({name: closure returning (W+ or None, ODE nfe)},
  parameter count)."""
  torch = import_torch("--compare_torch")
  from vidstyleode_jax import torch_trainable  # pylint: disable=g-import-not-at-top (it imports torch)
  module = torch_trainable.TrainablePath(jax.tree.map(np.asarray, params["params"]), config)
  o = config.optim
  dynamics, mapping = module.groups()
  optimizer = torch.optim.Adam([
      dict(params=dynamics, lr=o.learning_rate * o.dynamics_lr_multiplier, betas=(0.9, o.dynamics_b2)),
      dict(params=mapping, lr=o.learning_rate, betas=(0.9, o.mapping_b2)),
  ], eps=o.eps)
  args = [torch.from_numpy(np.array(inputs[name])) for name in vidstyleode.CALL_ARGUMENTS[:-1]]
  args.append([torch.from_numpy(np.array(style)) for style in inputs["styles"]])

  def forward():
    with torch.no_grad():
      w, nfe = module(*args)
    return w.numpy(), nfe

  def step():
    optimizer.zero_grad()
    w, nfe = module(*args)
    torch.mean(torch.square(w)).backward()
    optimizer.step()
    return None, nfe

  programs = {"forward": forward, "forward+backward+adam": step}
  return programs, sum(p.numel() for p in module.parameters())


class InProcess:
  """The references built in this process: run(label, name) -> ((W+ or None, nfe), {clock: seconds})."""

  def __init__(self, config, params, inputs, compare_torch, compare_official, torch_threads):
    torch = import_torch("--compare_torch" if compare_torch else "--compare_official")
    if torch_threads:
      torch.set_num_threads(torch_threads)
    self.threads = torch.get_num_threads()
    self.programs, self.params = {}, {}
    if compare_torch:
      self.programs["torch"], self.params["torch"] = torch_programs(config, params, inputs)
    if compare_official:
      self.programs["official"], self.params["official"] = official_trainable.programs(
          compare_official, config, inputs)

  def run(self, label, name):
    return clocked(self.programs[label][name])

  def close(self):
    pass


def _serve(connection, *build_args):
  """The worker's loop: builds InProcess(*build_args), then runs each (label, name) it is sent until None."""
  try:
    references = InProcess(*build_args)
  except Exception as e:  # pylint: disable=broad-except
    connection.send(e)
    return
  connection.send((references.params, references.threads))
  for request in iter(connection.recv, None):
    connection.send(references.run(*request))


class Worker:
  """The references in a process of their own (spawned, so that it starts with none of this process's state); the
  same interface as InProcess, with times and CPU seconds measured in the worker."""

  def __init__(self, config, params, inputs, compare_torch, compare_official, torch_threads):
    context = multiprocessing.get_context("spawn")
    self._connection, child = context.Pipe()
    params = jax.tree.map(np.asarray, params)
    self._process = context.Process(target=_serve, args=(
        child, config, params, inputs, compare_torch, compare_official, torch_threads), daemon=True)
    self._process.start()
    child.close()
    ready = self._connection.recv()
    if isinstance(ready, Exception):  # the worker has returned
      self._process.join(timeout=60)
      raise ready
    self.params, self.threads = ready

  def run(self, label, name):
    self._connection.send((label, name))
    return self._connection.recv()

  def close(self):
    if self._process.is_alive():
      self._connection.send(None)
    self._process.join(timeout=60)
