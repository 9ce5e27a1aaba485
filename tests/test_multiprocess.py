"""Multi-process training on CPU (localhost): 2 processes with one device each match 1 process, across a resume;
a SIGTERM to one of them stops both at one step.

Each process is a subprocess that joins the run through parallel.initialize_distributed() (JAX_COORDINATOR_ADDRESS
on 127.0.0.1, JAX_NUM_PROCESSES, JAX_PROCESS_ID) and calls train.train on a shared workdir; orbax saves and restores
collectively. Both runs see the same global batch, conftest.small_config's 4 rows: each of the 2 processes loads its 2.

  1. 2 processes train 3 steps; so does 1 process (at the same time, to share the ~30 s of compiling per launch).
  2. 2 new processes restore the 2-process checkpoint of step 3 and train on to step 5; 1 new process does the same
     with the 1-process checkpoint.

Tolerances (as in test_four_devices_match_one_device). The loss is a reduction over the batch whose summation order
changes with the sharding, so it may differ by float32 rounding: 1e-5 relative. Adam moves a parameter by about
lr * sign(gradient) whatever the gradient's size, so a parameter whose gradient is at the rounding level may move
differently: 1e-4 absolute on the parameters, whereas a sharding or resume bug (a wrong row, a lost optimizer state)
moves them by a whole step of lr (demo lr 1e-3, 5e-3 for the dynamics encoder). Measured on CPU: losses 1.1e-7
relative apart, parameters 4.8e-5, after 3 steps and after the resume to 5.
"""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO
from tests.conftest import free_port
from tests.conftest import training_records
from vidstyleode_jax import text
from vidstyleode_jax.data import synthetic

TIMEOUT_S = 1800  # a guard against a hung collective; a busy 2-core machine needs ~15 min per phase
LOSS_RTOL = 1e-5
PARAMS_ATOL = 1e-4

WORKER_SCRIPT = """
import sys, numpy as np, jax
from absl import logging
sys.path.insert(0, {repo!r})
from tests.conftest import small_config
from vidstyleode_jax import parallel, train
logging.set_verbosity(logging.INFO)
parallel.initialize_distributed()
assert jax.process_count() == {num_processes} and jax.local_device_count() == {local_devices}, jax.devices()
config = small_config({num_steps})
config.clip.tokenizer = {tokenizer!r}
state, _ = train.train(config, {workdir!r}, progress=False)
if parallel.is_main_process():
  np.savez({params_path!r}, *[np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(state.params)])
"""


def start_run(num_processes, num_steps, workdir, tokenizer, params_path, local_devices=1):
  """Starts `num_processes` training processes on localhost (train or resume to `num_steps`), each with
  `local_devices` CPU devices; returns their Popens.

  The main process writes the final params to `params_path` (.npz of the leaves in tree order).
  """
  script = WORKER_SCRIPT.format(repo=REPO, num_processes=num_processes, local_devices=local_devices,
                                num_steps=num_steps, workdir=str(workdir), tokenizer=str(tokenizer),
                                params_path=str(params_path))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  if local_devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local_devices}"
  if num_processes > 1:
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}", JAX_NUM_PROCESSES=str(num_processes))
  # Logs go to files, not pipes: a process blocked on a full pipe would stall its peers' collectives.
  processes = []
  for i in range(num_processes):
    with open(f"{params_path}.{i}.log", "w") as log:
      processes.append(subprocess.Popen([sys.executable, "-c", script], env=dict(env, JAX_PROCESS_ID=str(i)),
                                        cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    processes[-1].log_path = log.name
  return processes


def run_together(tokenizer, *runs):
  """Runs every (num_processes, num_steps, workdir, params_path) at the same time; returns each process's log.

  Fails (and kills the others) as soon as one process exits non-zero, or when TIMEOUT_S have passed.
  """
  processes = []
  try:
    for num_processes, num_steps, workdir, params_path in runs:
      processes += start_run(num_processes, num_steps, workdir, tokenizer, params_path)
    deadline = time.monotonic() + TIMEOUT_S
    exit_codes = [None]
    while None in exit_codes and time.monotonic() < deadline:
      time.sleep(1)
      exit_codes = [process.poll() for process in processes]
      if any(code not in (None, 0) for code in exit_codes):
        break
    logs = []
    for process in processes:
      with open(process.log_path) as log:
        logs.append(log.read())
    for process, code, log in zip(processes, exit_codes, logs):
      assert code in (None, 0), f"{process.log_path} (exit {code}):\n{log[-3000:]}"
    assert None not in exit_codes, f"still running after {TIMEOUT_S} s: see the logs next to {runs[0][3]}"
    return logs
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()


def losses_by_step(workdir):
  """[(step, loss/total)] of every training line of WORKDIR/metrics.jsonl, in file order."""
  return [(record["step"], record["loss/total"]) for record in training_records(workdir)]


def load_params(path):
  with np.load(path) as leaves:
    return [leaves[f"arr_{i}"] for i in range(len(leaves.files))]


def compare(two_losses, one_losses, two_params_path, one_params_path):
  """Largest relative loss difference and largest absolute parameter difference, 2 processes against 1."""
  assert [step for step, _ in two_losses] == [step for step, _ in one_losses]
  loss_diff = max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(two_losses, one_losses))
  two_params, one_params = load_params(two_params_path), load_params(one_params_path)
  assert [p.shape for p in two_params] == [p.shape for p in one_params]
  param_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(two_params, one_params))
  return loss_diff, param_diff


@pytest.fixture(scope="module")
def three_steps(tmp_path_factory):
  """Runs 2 processes and 1 process for 3 steps (side by side); returns the folder and the step-3 losses."""
  root = tmp_path_factory.mktemp("multiprocess")
  # A shared vocabulary folder: each process would otherwise rewrite the demo vocabulary in the shared workdir
  # while the other may be reading it.
  text.write_vocabulary_of(str(root / "tokenizer"), synthetic.vocabulary_words())
  run_together(root / "tokenizer", (2, 3, root / "two", root / "two_3.npz"), (1, 3, root / "one", root / "one_3.npz"))
  return root, losses_by_step(root / "two"), losses_by_step(root / "one")


@pytest.mark.slow
@pytest.mark.extended  # minutes of training: not in CI (pyproject.toml)
def test_two_processes_match_one_process_for_three_steps(three_steps):
  root, two_losses, one_losses = three_steps
  assert [step for step, _ in two_losses] == [1, 2, 3]
  loss_diff, param_diff = compare(two_losses, one_losses, root / "two_3.npz", root / "one_3.npz")
  print(dict(loss_rel_diff=loss_diff, param_abs_diff=param_diff))
  assert loss_diff <= LOSS_RTOL
  assert param_diff <= PARAMS_ATOL


@pytest.mark.slow
@pytest.mark.extended
def test_resume_across_processes_matches_one_process(three_steps):
  """2 new processes restore the 2-process step-3 checkpoint to step 5; 1 process resumes its own likewise."""
  root, _, _ = three_steps
  logs = run_together(root / "tokenizer", (2, 5, root / "two", root / "two_5.npz"),
                      (1, 5, root / "one", root / "one_5.npz"))
  # Rerunning from step 0 would give the same numbers; the log tells that every process restored step 3.
  assert all("Resumed from step 3" in log for log in logs)
  two_losses, one_losses = losses_by_step(root / "two"), losses_by_step(root / "one")
  assert [step for step, _ in two_losses] == [1, 2, 3, 4, 5]  # each step once: the resume appends 4 and 5
  loss_diff, param_diff = compare(two_losses[3:], one_losses[3:], root / "two_5.npz", root / "one_5.npz")
  print(dict(loss_rel_diff=loss_diff, param_abs_diff=param_diff))
  assert loss_diff <= LOSS_RTOL
  assert param_diff <= PARAMS_ATOL


SIGTERM_STEPS = 6


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step_and_the_resume_is_bit_identical(tmp_path):
  """SIGTERM reaches process 1 of 2 only, after step 1: both stop at the same step with a checkpoint, exit 0.

  Meanwhile one process with 2 CPU devices trains the same steps without interruption: the same global batches
  through the same 2-device program (4 processes at once would need twice the memory). Then 2 new processes resume
  the stopped run to the end. The resumed run's params are bit-identical to the uninterrupted run's, and it logs
  each step once, with the same losses.
  """
  text.write_vocabulary_of(str(tmp_path / "tokenizer"), synthetic.vocabulary_words())
  stopped_dir, straight_dir = tmp_path / "stopped", tmp_path / "straight"
  processes = []
  try:
    processes = start_run(1, SIGTERM_STEPS, straight_dir, tmp_path / "tokenizer", tmp_path / "straight.npz",
                          local_devices=2)
    processes += start_run(2, SIGTERM_STEPS, stopped_dir, tmp_path / "tokenizer", tmp_path / "stopped.npz")
    stopping = processes[1:]
    deadline = time.monotonic() + TIMEOUT_S
    metrics = stopped_dir / "metrics.jsonl"
    while not (os.path.exists(metrics) and '"loss/total"' in metrics.read_text()):
      assert all(p.poll() is None for p in stopping) and time.monotonic() < deadline, "no step 1 logged"
      time.sleep(0.01)
    stopping[1].send_signal(signal.SIGTERM)
    for process in processes:
      process.wait(TIMEOUT_S)
    logs = [open(process.log_path).read() for process in processes]
    for process, log in zip(processes, logs):
      assert process.returncode == 0, f"{process.log_path}:\n{log[-3000:]}"
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  lines = [re.search(r"train: stopped at step (\d+) of 6 \((.+?)\)", log) for log in logs[1:]]
  assert all(lines), logs
  assert [line.group(2) for line in lines] == ["another process's signal", "SIGTERM"]
  stopped = int(lines[0].group(1))
  print(f"SIGTERM to process 1 after step 1 was logged: both stopped at step {stopped}")
  assert int(lines[1].group(1)) == stopped < SIGTERM_STEPS
  assert os.listdir(stopped_dir / "checkpoints") == [str(stopped)]
  assert [step for step, _ in losses_by_step(stopped_dir)] == list(range(1, stopped + 1))

  logs = run_together(tmp_path / "tokenizer", (2, SIGTERM_STEPS, stopped_dir, tmp_path / "resumed.npz"))
  assert all(f"Resumed from step {stopped}" in log for log in logs)
  assert losses_by_step(stopped_dir) == losses_by_step(straight_dir)  # each step once, the same losses
  for resumed, uninterrupted in zip(load_params(tmp_path / "resumed.npz"), load_params(tmp_path / "straight.npz")):
    np.testing.assert_array_equal(resumed, uninterrupted)
