"""Multi-process training on CPU (localhost): 2 processes with one device each match 1 process, across a resume.

Each process is a subprocess that joins the run through parallel.initialize_distributed() (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID) and calls train.train on a shared workdir; orbax saves and restores collectively.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from vidstyleode_jax import text
from vidstyleode_jax.data import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 600

WORKER_SCRIPT = """
import sys, numpy as np, jax
sys.path.insert(0, {repo!r})
from tests.conftest import tiny_config
from vidstyleode_jax import parallel, train
parallel.initialize_distributed()
assert jax.process_count() == {num_processes} and jax.local_device_count() == 1, jax.devices()
config = tiny_config({num_steps})
config.clip.tokenizer = {tokenizer!r}
state, _ = train.train(config, {workdir!r}, progress=False)
if parallel.is_main_process():
  np.savez({params_path!r}, *[np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(state.params)])
"""



def free_port():
  """A TCP port on 127.0.0.1 that nothing listens on right now."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]

def start_run(num_processes, num_steps, workdir, tokenizer, params_path):
  """Starts `num_processes` training processes on localhost; returns their Popen objects."""
  script = WORKER_SCRIPT.format(repo=REPO, num_processes=num_processes, num_steps=num_steps, workdir=str(workdir),
                                tokenizer=str(tokenizer), params_path=str(params_path))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  if num_processes > 1:
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}",
               JAX_NUM_PROCESSES=str(num_processes))
  # Logs go to files, not pipes: a process blocked on a full pipe would stall its peers' collectives.
  processes = []
  for i in range(num_processes):
    with open(f"{params_path}.{i}.log", "w") as log:
      processes.append(subprocess.Popen([sys.executable, "-c", script], env=dict(env, JAX_PROCESS_ID=str(i)),
                                        cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    processes[-1].log_path = log.name
  return processes


def kill(processes):
  for process in processes:
    if process.poll() is None:
      process.kill()
      process.wait()


def finish(processes):
  """Waits for every process (TIMEOUT_S each); kills all of them if one fails or hangs."""
  try:
    for process in processes:
      process.wait(timeout=TIMEOUT_S)
      with open(process.log_path) as log:
        assert process.returncode == 0, log.read()[-3000:]
  finally:
    kill(processes)


def scalar_lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [record for record in map(json.loads, f) if "loss/total" in record]


def load_params(path):
  with np.load(path) as leaves:
    return [leaves[f"arr_{i}"] for i in range(len(leaves.files))]


@pytest.mark.slow
def test_two_processes_with_resume_match_one_process(tmp_path):
  """2 processes train 2 steps and exit, 2 new processes resume to 4; 1 process trains 4 steps straight.

  Both see the same global batch of tiny_config's 4 rows (each of the 2 processes loads its 2). Tolerances as in
  test_four_devices_match_one_device: the loss is a reduction over the batch whose order changes with the sharding
  (float32 rounding), so 1e-5 relative; Adam moves a parameter by about lr * sign(gradient) whatever the gradient's
  size, so a parameter whose gradient is at the rounding level can move differently: 1e-4 absolute on the params,
  whereas a sharding or resume bug (a wrong row, a lost optimizer state) moves params by a whole lr (up to 5e-3).
  """
  # A shared vocabulary folder: each process would otherwise rewrite the demo vocabulary in the shared workdir
  # while the other may be reading it.
  tokenizer = tmp_path / "tokenizer"
  text.write_demo_vocabulary(str(tokenizer), synthetic.vocabulary_words())
  one_process = start_run(1, 4, tmp_path / "one", tokenizer, tmp_path / "one.npz")
  try:
    finish(start_run(2, 2, tmp_path / "two", tokenizer, tmp_path / "two_first.npz"))
    finish(start_run(2, 4, tmp_path / "two", tokenizer, tmp_path / "two.npz"))
    finish(one_process)
  finally:
    kill(one_process)

  two_lines, one_lines = scalar_lines(tmp_path / "two"), scalar_lines(tmp_path / "one")
  assert [r["step"] for r in two_lines] == [1, 2, 3, 4]
  assert [r["step"] for r in one_lines] == [1, 2, 3, 4]
  loss_rel_diffs = [abs(a["loss/total"] - b["loss/total"]) / abs(b["loss/total"])
                    for a, b in zip(two_lines, one_lines)]
  two_params, one_params = load_params(tmp_path / "two.npz"), load_params(tmp_path / "one.npz")
  assert len(two_params) == len(one_params)
  param_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(two_params, one_params))
  print(dict(loss_rel_diffs=loss_rel_diffs, param_diff=param_diff))
  assert max(loss_rel_diffs) <= 1e-5
  assert param_diff <= 1e-4
