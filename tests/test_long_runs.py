"""Long runs: bad steps skipped, SIGTERM with a checkpoint, a SIGKILL soak, unreadable checkpoints, one trainer.

Every run here uses conftest's small_config, the demo model with one or two layers per network, so that each
restart of a trainer (the soak starts one 11 times) traces a smaller train step; the compiled programs come from
JAX's persistent compilation cache (conftest). Trainers run as `python -m vidstyleode_jax.train` subprocesses where
a signal must reach them. "Bit-identical" compares every array of the final train state (params and Adam moments) with
assert_array_equal against a run that was never interrupted.
"""

import glob
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import REPO
from tests.conftest import SMALL
from tests.conftest import small_config
from tests.conftest import training_records
from vidstyleode_jax import checkpointing
from vidstyleode_jax import files
from vidstyleode_jax import parallel
from vidstyleode_jax import run_lock
from vidstyleode_jax import train
from vidstyleode_jax import train_step
from vidstyleode_jax.data import pipeline
from vidstyleode_jax.errors import UserError

STEPS = 16
TIMEOUT_S = 900  # a guard against a hung trainer; the slowest CI machine needs far less


def trainer_command(workdir, num_steps=STEPS, **train_fields):
  """The command line that trains small_config(num_steps, **train_fields) in `workdir`."""
  config = small_config(num_steps, **train_fields)
  overrides = {**{f"data.{k}": config.data[k] for k in ("num_train_videos", "num_eval_videos", "frames_per_video",
                                                       "batch_size")},
               **{f"train.{k}": v for k, v in config.train.items()}, **SMALL}
  flags = [f"--config.{field}={','.join(map(str, value)) if isinstance(value, tuple) else value}"
           for field, value in overrides.items()]
  return [sys.executable, "-m", "vidstyleode_jax.train", "--config=configs/demo.py", f"--workdir={workdir}",
          "--progress=false", *flags]


def start_trainer(workdir, num_steps=STEPS, **train_fields):
  """Starts a trainer subprocess; its stdout and stderr go to WORKDIR.<n>.log (returned as .log_path)."""
  logs = len(glob.glob(f"{workdir}.*.log"))
  log_path = f"{workdir}.{logs}.log"
  with open(log_path, "w") as log:
    process = subprocess.Popen(trainer_command(workdir, num_steps, **train_fields), cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  process.log_path = log_path
  return process


def log_of(process):
  with open(process.log_path) as f:
    return f.read()


def logged_steps(workdir):
  return [record["step"] for record in training_records(workdir)]


def metrics_inode(workdir):
  path = os.path.join(workdir, files.METRICS_FILE)
  return os.stat(path).st_ino if os.path.exists(path) else None


def checkpoint_steps(workdir):
  folder = os.path.join(workdir, files.CHECKPOINTS_DIR)
  return sorted(int(name) for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else []


def wait_until(condition, process, what):
  """Polls `condition` every 5 ms until it holds; fails if `process` ended first or TIMEOUT_S passed."""
  deadline = time.monotonic() + TIMEOUT_S
  while not condition():
    assert process.poll() is None, f"the trainer ended (exit {process.returncode}) before {what}:\n{log_of(process)}"
    assert time.monotonic() < deadline, f"no {what} after {TIMEOUT_S} s:\n{log_of(process)}"
    time.sleep(0.005)


def finish(process):
  process.wait(TIMEOUT_S)
  assert process.returncode == 0, log_of(process)[-5000:]


def host(tree):
  """Copies of the leaves (a view of a donated buffer could change under the test)."""
  return [np.array(leaf) for leaf in jax.tree.leaves(tree)]


def saved_state(workdir, state_like, step):
  checkpointer = checkpointing.Checkpointer(workdir)
  try:
    return checkpointer.restore(state_like, step)
  finally:
    checkpointer.close()


def assert_bit_identical(leaves, reference):
  assert len(leaves) == len(reference)
  for a, b in zip(leaves, reference):
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """small_config trained for STEPS steps without interruption: (final state, host leaves, [(step, checksum)])."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  state, _ = train.train(small_config(STEPS), workdir, progress=False)
  return state, host(state), batch_order(workdir)


def batch_order(workdir):
  return [(record["step"], record["data/batch_checksum"]) for record in training_records(workdir)]


# Bad steps.


def test_bad_steps_leave_the_state_bit_identical_and_the_run_goes_on(tmp_path):
  """A batch with a NaN in its W+ (everything downstream is NaN) and one whose ODE solve fails are skipped."""
  exp = train.setup(small_config(STEPS), str(tmp_path))
  step_fn = train_step.make_train_step(exp.nets, exp.mesh)

  def batch(step, change=None):
    video_ids, frame_numbers = exp.sampler.plan(step)
    local = pipeline.make_batch(exp.datasets.train, exp.datasets.train_tokens, video_ids, frame_numbers,
                                exp.nets.config.data.video_length)
    if change:
      change(local)
    return parallel.global_batch(local, exp.mesh)

  def nan_wplus(local):
    local["wplus"][1, 2, 0, 0] = np.nan

  def unreachable_times(local):
    local["times"][:, -1] = np.inf  # no number of Dopri5 steps reaches the last frame: max_steps runs out

  state, metrics = step_fn(exp.state, exp.frozen_vars, batch(0))
  assert float(metrics["train/skipped"]) == 0.0
  for step, change in ((1, nan_wplus), (2, unreachable_times)):
    before = host((state.params, state.opt_state))
    state, metrics = step_fn(state, exp.frozen_vars, batch(step, change))
    metrics = jax.device_get(metrics)
    assert metrics["train/skipped"] == 1.0 and int(state.step) == step + 1
    assert_bit_identical(host((state.params, state.opt_state)), before)
    reason = train_step.bad_step_reason(metrics)
    print(step, reason)
    assert ("loss/total=nan" in reason) if change is nan_wplus else ("ode/failed=1" in reason)
  before = host(state.params)
  state, metrics = step_fn(state, exp.frozen_vars, batch(3))
  assert float(metrics["train/skipped"]) == 0.0
  assert any(not np.array_equal(a, b) for a, b in zip(host(state.params), before))


def test_consecutive_bad_steps_stop_the_run_and_no_checkpoint_holds_non_finite_values(tmp_path, monkeypatch,
                                                                                       uninterrupted):
  """NaN W+ in the batches of steps 2, 4 and 5 (numbered as logged) with train.max_consecutive_skips=2.

  Step 2 is skipped alone and the run goes on; steps 4 and 5 in a row stop it with a message naming step 5 and
  loss/total. A checkpoint is saved after every step; all of them are finite, and the one of step 2 holds the
  params of step 1.
  """
  poisoned = {1, 3, 4}  # 0-based indices of the batches, i.e. the steps logged as 2, 4 and 5
  real_batches = pipeline.training_batches

  def batches(*args, **kwargs):
    for step, batch in real_batches(*args, **kwargs):
      if step in poisoned:
        batch["wplus"][0, 0, 0, 0] = np.nan
      yield step, batch

  monkeypatch.setattr(pipeline, "training_batches", batches)
  workdir = str(tmp_path / "run")
  config = small_config(8, checkpoint_every=1, keep_checkpoints=10, max_consecutive_skips=2)
  with pytest.raises(UserError, match=r"2 bad steps in a row \(train.max_consecutive_skips=2\), the last at step 5: "
                                      r"loss/total=nan"):
    train.train(config, workdir, progress=False)

  lines = training_records(workdir)
  assert [r["step"] for r in lines] == [1, 2, 3, 4]  # step 5 raised before it was logged
  assert [r["train/skipped_steps"] for r in lines] == [0, 1, 0, 1]
  assert checkpoint_steps(workdir) == [1, 2, 3, 4]
  saved = {step: saved_state(workdir, uninterrupted[0], step) for step in checkpoint_steps(workdir)}
  for state in saved.values():
    assert all(np.all(np.isfinite(leaf)) for leaf in host(state))
  assert_bit_identical(host(saved[2].params), host(saved[1].params))
  assert_bit_identical(host(saved[4].params), host(saved[3].params))


# Preemption.


def test_sigterm_stops_with_a_checkpoint_and_the_resumed_run_is_bit_identical(tmp_path, uninterrupted):
  workdir = str(tmp_path / "run")
  process = start_trainer(workdir)
  wait_until(lambda: 3 in logged_steps(workdir), process, "step 3")
  process.send_signal(signal.SIGTERM)
  finish(process)
  match = re.search(r"train: stopped at step (\d+) of 16 \(SIGTERM\); checkpoint saved in (\S+); run the same "
                    r"command to resume", log_of(process))
  assert match, log_of(process)
  stopped = int(match.group(1))
  print(f"SIGTERM after step 3 was logged: stopped at step {stopped}")
  assert checkpoint_steps(workdir) == [stopped] and match.group(2).endswith(f"{files.CHECKPOINTS_DIR}/{stopped}")
  assert logged_steps(workdir) == list(range(1, stopped + 1))

  state, _ = train.train(small_config(STEPS), workdir, progress=False)
  reference_state, reference, order = uninterrupted
  assert_bit_identical(host(state), reference)
  assert batch_order(workdir) == order


def test_a_second_signal_ends_the_process_at_once():
  script = ("import os, signal, time\n"
            "from vidstyleode_jax import stopping\n"
            "with stopping.Signals() as signals:\n"
            "  os.kill(os.getpid(), signal.SIGINT)\n"
            "  assert signals.received == 'SIGINT'\n"
            "  print('first signal recorded', flush=True)\n"
            "  os.kill(os.getpid(), signal.SIGTERM)\n"
            "  time.sleep(30)\n"
            "  print('still running')\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == -signal.SIGTERM, result.stderr
  assert result.stdout == "first signal recorded\n"
  assert "SIGINT received: finishing the steps in flight" in result.stderr


SOAK_SEED = 20261129
SOAK_KILLS = ("checkpoint write",) * 2 + ("after a step",) + ("start-up",)


@pytest.mark.slow
def test_sigkill_soak_resumes_bit_identical_with_each_step_logged_once(tmp_path, uninterrupted):
  """4 SIGKILLs of one run with a checkpoint after every step, at seeded moments, each followed by a restart.

  The moments, in a seeded random order: inside a checkpoint write (a STEP.orbax-checkpoint-tmp folder exists);
  a random delay (0-0.5 s) after the metrics line of a step one or two past the checkpoint the trainer resumed from;
  a random time (0.5-8 s) after start-up (importing, setting up, restoring). A last trainer finishes the run.
  """
  rng = np.random.default_rng(SOAK_SEED)
  workdir = str(tmp_path / "run")
  checkpoints = os.path.join(workdir, files.CHECKPOINTS_DIR)
  kills = []
  for moment in rng.permutation(SOAK_KILLS):
    resumed_from = max(checkpoint_steps(workdir), default=0)
    process = start_trainer(workdir, checkpoint_every=1)
    if moment == "checkpoint write":
      target = f"{resumed_from + 2}{checkpointing.UNFINISHED}"
      wait_until(lambda: os.path.isdir(checkpoints) and any(target in name for name in os.listdir(checkpoints)),
                 process, f"a write of checkpoint {resumed_from + 2}")
    elif moment == "after a step":
      # The trainer first rewrites metrics.jsonl without the steps after its checkpoint (a new file): only lines
      # in the new file are its own.
      stale = metrics_inode(workdir)
      step = resumed_from + int(rng.integers(1, 3))
      wait_until(lambda: metrics_inode(workdir) != stale and step in logged_steps(workdir), process, f"step {step}")
      time.sleep(rng.uniform(0, 0.5))
    else:
      time.sleep(rng.uniform(0.5, 8))
    assert process.poll() is None, f"the trainer ended before the kill:\n{log_of(process)}"
    process.kill()
    process.wait()
    unfinished = [name for name in os.listdir(checkpoints) if checkpointing.UNFINISHED in name] \
        if os.path.isdir(checkpoints) else []
    kills.append((moment, resumed_from, checkpoint_steps(workdir), unfinished))
  for kill in kills:
    print("killed %-16s resumed from %2d, checkpoints then %s, unfinished %s" % kill)
  inside_writes = sum(bool(unfinished) for *_, unfinished in kills)
  print(f"{len(kills)} kills, {inside_writes} inside a checkpoint write")
  assert inside_writes >= SOAK_KILLS.count("checkpoint write")

  process = start_trainer(workdir, checkpoint_every=1)
  finish(process)
  reference_state, reference, order = uninterrupted
  assert_bit_identical(host(saved_state(workdir, reference_state, STEPS)), reference)
  assert batch_order(workdir) == order  # each step once, in order, with the uninterrupted run's batches


# Unreadable checkpoints.


@pytest.fixture
def two_checkpoints(tmp_path):
  """A workdir with checkpoints 1 and 2 of a small state; returns (workdir, state of step 1, state of step 2)."""
  states = {step: {"params": jnp.full((64,), step, jnp.float32), "step": jnp.asarray(step, jnp.int32)}
            for step in (1, 2)}
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=3)
  for step, state in states.items():
    checkpointer.save(step, state)
  checkpointer.close()
  return str(tmp_path), states[1], states[2]


def largest_file(folder):
  paths = [p for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)]
  return max(paths, key=os.path.getsize)


def truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize("damage", ["truncated data file", "missing item"])
def test_an_unreadable_latest_checkpoint_is_set_aside_and_the_previous_one_resumed(two_checkpoints, damage, caplog):
  workdir, first, _ = two_checkpoints
  latest = os.path.join(workdir, files.CHECKPOINTS_DIR, "2")
  if damage == "truncated data file":
    truncate(largest_file(latest))
  else:
    shutil.rmtree(os.path.join(latest, "default"))
  checkpointer = checkpointing.Checkpointer(workdir, keep=3)
  with caplog.at_level(logging.WARNING):
    restored = checkpointer.restore_newest_readable(first)
  assert_bit_identical(host(restored), host(first))
  assert re.search(r"Checkpoint 2 in \S+ cannot be restored .*; trying the one before it", caplog.text)
  assert checkpoint_steps(workdir) == [1]
  assert [name.split("-")[0] for name in os.listdir(os.path.join(workdir, files.UNREADABLE_CHECKPOINTS_DIR))] == ["2"]
  checkpointer.save(2, first)  # the step can be saved again
  checkpointer.close()
  assert checkpoint_steps(workdir) == [1, 2]


def test_no_readable_checkpoint_is_an_error_not_a_restart_from_step_zero(two_checkpoints):
  workdir, first, _ = two_checkpoints
  for step in ("1", "2"):
    truncate(largest_file(os.path.join(workdir, files.CHECKPOINTS_DIR, step)))
  checkpointer = checkpointing.Checkpointer(workdir, keep=3)
  with pytest.raises(UserError, match=r"none of the checkpoints in \S+ can be restored \(newest first: step 2: .*; "
                                      r"step 1: .*\); move the folder away to start again from step 0"):
    checkpointer.restore_newest_readable(first)
  checkpointer.close()
  assert checkpoint_steps(workdir) == [1, 2]  # nothing set aside


# One trainer per workdir.


def test_a_second_trainer_refuses_and_a_killed_trainers_lock_is_taken_over(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen(
      [sys.executable, "-c", f"import time; from vidstyleode_jax import run_lock\n"
       f"with run_lock.hold({workdir!r}):\n  print('holding', flush=True); time.sleep(300)"],
      cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == "holding\n"
    with pytest.raises(UserError, match=rf"{workdir} is in use: \S+train.lock says that process {holder.pid} on "
                                        rf"host \S+ trains there"):
      train.train(small_config(STEPS), workdir, progress=False)
  finally:
    holder.kill()
    holder.wait()
  with caplog.at_level(logging.WARNING), run_lock.hold(workdir):
    with open(os.path.join(workdir, files.LOCK_FILE)) as f:
      assert json.load(f)["pid"] == os.getpid()
  assert f"Taking over {workdir}/train.lock from process {holder.pid}" in caplog.text
  assert not os.path.exists(os.path.join(workdir, files.LOCK_FILE))


def test_a_lock_of_another_host_or_a_reused_pid(tmp_path):
  """Another host's lock is never taken over; a lock whose pid now belongs to another process is."""
  path = os.path.join(tmp_path, files.LOCK_FILE)
  with open(path, "w") as f:
    json.dump({"host": "another-host", "pid": os.getpid(), "start_time": "1"}, f)
  with pytest.raises(UserError, match=r"process \d+ on host another-host trains there.* delete \S+train.lock"):
    with run_lock.hold(str(tmp_path)):
      pass
  with open(path) as f:
    holder = json.load(f)
  holder.update(host=socket.gethostname(), start_time="reused")  # this pid, but another process's start time
  with open(path, "w") as f:
    json.dump(holder, f)
  with run_lock.hold(str(tmp_path)):
    with open(path) as f:
      taken = json.load(f)
    assert taken["pid"] == os.getpid() and taken["start_time"] != "reused"
  assert not os.path.exists(path)
