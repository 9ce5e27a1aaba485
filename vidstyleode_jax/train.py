r"""Trains VidStyleODE.

  python -m vidstyleode_jax.train --config=configs/demo.py --workdir=/tmp/vidstyleode_demo

Giving the same --workdir again resumes from its latest readable checkpoint. Config fields can be overridden on the
command line, e.g. --config.train.num_steps=100. The workdir receives checkpoints/, metrics.jsonl, tensorboard/
and samples/ (mp4 and gif grids: real | reconstruction | edited | dynamics swapped).

Long runs (README, "Long runs"): one trainer per workdir (run_lock.py); a bad step (non-finite loss or gradients,
or a failed ODE solve) is skipped and counted in train/skipped_steps, and train.max_consecutive_skips of
them in a row stop the run (stopping.py); SIGTERM or SIGINT stops it with a checkpoint at the step it reached and
exit status 0, a second signal at once (stopping.py); an unreadable latest checkpoint is set aside and the one
before it resumed (checkpointing.py).
"""

import dataclasses
import os

import jax
import numpy as np
import tqdm
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from vidstyleode_jax import checkpointing
from vidstyleode_jax import config_validation
from vidstyleode_jax import errors
from vidstyleode_jax import heldout
from vidstyleode_jax import host_memory
from vidstyleode_jax import inference
from vidstyleode_jax import metric_writers
from vidstyleode_jax import parallel
from vidstyleode_jax import run_lock
from vidstyleode_jax import stopping
from vidstyleode_jax import train_step
from vidstyleode_jax.data import pipeline
from vidstyleode_jax.data import sources
from vidstyleode_jax.models import frozen as frozen_lib

config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")

NUM_SAMPLE_VIDEOS = 4


@dataclasses.dataclass
class Experiment:
  """Everything a training run is made of, before the loop starts."""

  nets: inference.Networks
  mesh: jax.sharding.Mesh
  frozen_vars: dict
  datasets: sources.Datasets
  sampler: pipeline.ClipSampler
  state: train_step.TrainState


def batch_checksum(batch):
  """A number that changes with the batch's videos and frames, logged so that runs can compare data order."""
  ids = batch["video_ids"].astype(np.int64)
  times = np.round(batch["times"][0] * 1e4).astype(np.int64)
  return int(np.sum(ids * (np.arange(len(ids)) + 1)) * 1_000_003 + np.sum(times * (np.arange(len(times)) + 7)))


def setup(config, workdir, mesh=None):
  """Resolves and checks the config, builds the networks and data, and initialises (not restores) the train state.

  WORKDIR/config.json receives the resolved config (the frozen networks' architectures included): the applications
  and evaluation rebuild the model from it.
  """
  config = config_validation.resolve(config)
  os.makedirs(workdir, exist_ok=True)
  checkpointing.write_config(workdir, config)
  mesh = parallel.create_mesh() if mesh is None else mesh
  parallel.check_batch_size(config.data.batch_size, mesh)
  nets = inference.Networks.from_config(config)
  frozen_vars = parallel.replicate(
      frozen_lib.load_or_init(nets.frozen, config, jax.random.key(config.seed + 1)), mesh)
  datasets = sources.load(config, nets.frozen, frozen_vars, workdir)
  sampler = pipeline.ClipSampler(
      datasets.train.frame_numbers, batch_size=config.data.batch_size,
      frames_per_clip=config.data.frames_per_clip, seed=config.seed, clip_span=config.data.clip_span,
  )
  video_ids, frame_numbers = sampler.plan(0)
  rows = pipeline.host_rows(config.data.batch_size, jax.process_index(), jax.process_count())
  example = pipeline.make_batch(datasets.train, datasets.train_tokens, video_ids[rows], frame_numbers,
                                config.data.video_length)
  state = parallel.replicate(train_step.init_state(nets, config, jax.random.key(config.seed), example), mesh)
  return Experiment(nets, mesh, frozen_vars, datasets, sampler, state)


def train(config, workdir, progress=True, mesh=None):
  """Runs (or resumes) training in `workdir`; returns the train state it reached and the last held-out metrics.

  Raises UserError when another run holds the workdir, when its checkpoints exist but none can be restored, after
  train.max_consecutive_skips bad steps in a row, and when the disk is full.
  """
  config = config_validation.resolve(config)  # a config that does not fit fails before anything is written
  with run_lock.hold(workdir):
    return _train(config, workdir, progress, mesh)


def _train(config, workdir, progress, mesh):
  exp = setup(config, workdir, mesh)
  nets, mesh, frozen_vars, datasets, sampler = exp.nets, exp.mesh, exp.frozen_vars, exp.datasets, exp.sampler
  config = nets.config
  checkpointer = checkpointing.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  state = checkpointer.restore_newest_readable(exp.state)
  if state is None:
    state = exp.state
  else:
    logging.info("Resumed from step %d in %s", int(state.step), workdir)
  first_step = int(state.step)

  step_fn = train_step.make_train_step(nets, mesh)
  evaluate_fn = heldout.make_evaluate(nets)
  sample_fn = heldout.make_sample_columns(nets)
  frames01, wplus, _, times = heldout.eval_clips(nets, datasets.eval, datasets.eval_tokens)
  sample_clips = heldout.eval_clips(nets, datasets.eval, datasets.eval_tokens, NUM_SAMPLE_VIDEOS)

  def evaluate_and_sample(step, state):
    metrics = evaluate_fn(state.params, frozen_vars, frames01, wplus, times)
    metrics = {f"eval/{k}": float(v) for k, v in metrics.items()}
    writer.write_scalars(step, metrics)
    if main:
      columns = sample_fn(state.params, frozen_vars, *sample_clips)
      heldout.write_samples(workdir, step, jax.device_get(columns), fps=8)
    return metrics

  def log(step, metrics, local_batch):
    metrics = jax.device_get(metrics)
    del metrics["train/skipped"], metrics["train/stop_vote"]
    metrics["train/skipped_steps"] = review.take_skipped_count()
    metrics["data/batch_checksum"] = batch_checksum(local_batch)
    writer.write_scalars(step, metrics)
    bar.set_postfix(loss=f"{metrics['loss/total']:.4f}", nfe=int(metrics["ode/nfe"]))

  main = parallel.is_main_process()
  # Metrics are logged under the number of completed steps: lines after the checkpoint start at first_step + 1.
  writer = metric_writers.MetricWriter(workdir, enabled=main, resume_step=first_step + 1)
  if first_step == 0:
    writer.write_hparams(config.to_dict())
  batches = pipeline.prefetch(pipeline.training_batches(
      datasets.train, datasets.train_tokens, sampler, video_length=config.data.video_length, first_step=first_step,
      process_index=jax.process_index(), process_count=jax.process_count(), read_threads=config.data.read_threads,
  ), size=config.data.prefetch)
  t = config.train
  eval_metrics = {}
  review = stopping.StepReview(t.max_consecutive_skips)
  bar = tqdm.tqdm(total=t.num_steps, initial=first_step, disable=not (progress and main), unit="step")
  try:
    with stopping.Signals() as signals:
      for step, local_batch in batches:
        if step >= t.num_steps:
          break
        local_batch["stop_votes"] = signals.votes(len(local_batch["video_ids"]))
        state, metrics = step_fn(state, frozen_vars, parallel.global_batch(local_batch, mesh))
        done = step + 1
        bar.update(1)
        review.add(done, metrics)
        review.review(keep_newest=True)  # the steps before this one, while the device runs it
        stop = review.stop_voted
        log_now = stop or done % t.log_every == 0 or done == t.num_steps
        save_now = stop or done % t.checkpoint_every == 0 or done == t.num_steps
        if log_now or save_now:
          review.review()
        if log_now:
          log(done, metrics, local_batch)
        if save_now:
          checkpointer.save(done, state)
        if done % t.sample_every == 0 or done == t.num_steps:
          eval_metrics = evaluate_and_sample(done, state)
        if stop:
          checkpointer.wait()
          cause = signals.received or "another process's signal"
          print(f"train: stopped at step {done} of {t.num_steps} ({cause}); checkpoint saved in "
                f"{checkpointer.directory}/{done}; run the same command to resume", flush=True)
          break
  finally:
    bar.close()
    checkpointer.wait()
    checkpointer.close()
    writer.close()
  return state, eval_metrics


@errors.exits_on_user_error("train")
def main(argv):
  del argv
  host_memory.keep_freed_memory()
  config_validation.resolve(flags.FLAGS.config)  # fail fast, before joining other processes
  parallel.initialize_distributed()
  state, eval_metrics = train(flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.progress)
  if eval_metrics:
    logging.info("Finished at step %d: %s", int(state.step), eval_metrics)
    print({k: round(v, 6) for k, v in eval_metrics.items()})


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, flags_parser=errors.absl_flags_parser("train"))
