r"""Benchmarks the jitted train step of a config on random inputs of its shapes.

  python -m vidstyleode_jax.bench --config=configs/demo.py
  python -m vidstyleode_jax.bench --config=configs/fashion.py --random_weights --config.data.batch_size=1
  python -m vidstyleode_jax.bench --config=configs/fashion.py --loader_only [--dataset_dir=data/fashion]

Prints compile time, median step time, clips/s, ODE function evaluations per step, peak memory (the device's
allocator where it reports one, else the process's peak RSS) and XLA's cost and memory analysis of the compiled
step. --random_weights benchmarks a config whose ported weights or dataset are not at hand: its frozen networks get
the architectures of the published checkpoints (PUBLISHED_ARCHITECTURES) and random values. No dataset is read: the
batch is random frames, inversions and token ids.

--loader_only times the input pipeline alone (no model): batches read from a prepared dataset's
config.data.train_split with config.data.read_threads threads and config.data.prefetch batches ahead, as training
reads them; it prints batches/s and clips/s. Without --dataset_dir it first writes a temporary prepared dataset
at the config's shapes (LOADER_VIDEOS videos of LOADER_FRAMES frames, random content) and deletes it afterwards.
"""

import os
import resource
import shutil
import tempfile
import time

import jax
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from vidstyleode_jax import config_validation
from vidstyleode_jax import errors
from vidstyleode_jax import inference
from vidstyleode_jax import parallel
from vidstyleode_jax import train_step
from vidstyleode_jax.data import pipeline
from vidstyleode_jax.data import prepared
from vidstyleode_jax.data import sources
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import frozen as frozen_lib

config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
flags.DEFINE_integer("steps", 10, "Timed steps (after one compile-and-warm-up step); with --loader_only, timed "
                     "batches (after one warm-up batch).")
flags.DEFINE_bool("random_weights", False, "Ignore checkpoint and dataset paths; use random weights.")
flags.DEFINE_bool("compile_only", False, "Stop after compiling: XLA's cost and memory analysis, no timed steps.")
flags.DEFINE_bool("loader_only", False, "Time the input pipeline alone (no model): batches/s and clips/s.")
flags.DEFINE_string("dataset_dir", "", "With --loader_only: the prepared dataset to read; empty: a temporary one "
                    "with random content at the config's frame and W+ shapes.")

LOADER_VIDEOS = 12
LOADER_FRAMES = 150

GIB = 2.0**30


def random_batch(config, n_latent, seed=0):
  """A host batch with the shapes and dtypes of data/pipeline.make_batch."""
  d = config.data
  rng = np.random.default_rng(seed)
  b, t = d.batch_size, d.frames_per_clip
  frame_numbers = np.concatenate([[0], np.sort(rng.choice(np.arange(1, 4 * t), t - 1, replace=False))])
  return dict(
      frames=rng.integers(0, 256, (b, t, d.height, d.width, 3), dtype=np.uint8),
      wplus=rng.standard_normal((b, t, n_latent, config.generator.style_dim)).astype(np.float32),
      tokens=rng.integers(1, config.clip.vocab_size - 1, (b, config.clip.context_length)).astype(np.int32),
      times=np.broadcast_to((frame_numbers / d.video_length).astype(np.float32), (b, t)).copy(),
      video_ids=np.arange(b, dtype=np.int32),
      stop_votes=np.zeros(b, np.float32),
  )


# What `python -m port_weights` writes in architecture.json for the published checkpoints the paper configs read
# (by the name of their default ported folder), for benchmarks without the weights.
PUBLISHED_ARCHITECTURES = {
    "stylegan_human_v2_1024": dict(kind="stylegan2-ada", fields=dict(
        resolution=1024, aspect=2, style_dim=512, n_mlp=8, channel_multiplier=2, channel_divisor=1, lr_mlp=0.01,
        conv_clamp=256.0)),
    "stylegan2_ffhq_1024": dict(kind="stylegan2", fields=dict(
        resolution=1024, aspect=1, style_dim=512, n_mlp=8, channel_multiplier=2, channel_divisor=1, lr_mlp=0.01)),
    "clip_vit_b32": dict(kind="clip", fields=dict(
        embed_dim=512, image_size=224, vision_patch_size=32, vision_width=768, vision_depth=12, vision_heads=12,
        vocab_size=49408, context_length=77, text_width=512, text_depth=12, text_heads=8)),
    "dino_vitb16": dict(kind="dino", fields=dict(
        patch_size=16, width=768, depth=12, num_heads=12, mlp_dim=3072, pretrained_grid=14)),
}


def with_random_weights(config):
  """The config with the published architectures of its frozen networks, no weight paths and synthetic data."""
  architectures = {}
  for name in frozen_lib.BUILDERS:
    path = config[name].checkpoint
    if path:
      published = PUBLISHED_ARCHITECTURES.get(os.path.basename(os.path.normpath(path)))
      if published is None:
        raise UserError(f"--random_weights: {name}.checkpoint={path} is not one of the published checkpoints "
                        f"{sorted(PUBLISHED_ARCHITECTURES)}; port it, or set {name}.checkpoint='' and its fields")
      architectures[name] = published
  config = frozen_lib.resolve_architectures(config, architectures)
  for section in ("generator", "clip", "dino", "psp"):
    if section in config:
      config[section].checkpoint = ""
  config.clip.tokenizer = ""
  config.data.kind = "synthetic"
  return config


def peak_memory_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return "device allocator", stats["peak_bytes_in_use"]
  return "process peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def analysis(compiled):
  """XLA's cost and memory analysis of a compiled program, as figures."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  figures = {
      "xla_flops_per_step": float(cost.get("flops", float("nan"))),
      "xla_bytes_accessed_per_step": float(cost.get("bytes accessed", float("nan"))),
  }
  memory = compiled.memory_analysis()
  if memory is not None:
    figures.update({
        "xla_argument_GiB": memory.argument_size_in_bytes / GIB,
        "xla_output_GiB": memory.output_size_in_bytes / GIB,
        "xla_temp_GiB": memory.temp_size_in_bytes / GIB,
        "xla_generated_code_GiB": memory.generated_code_size_in_bytes / GIB,
    })
  return figures


def benchmark(config, steps, compile_only=False):
  """Compiles and (unless compile_only) times the train step; returns a dict of figures."""
  config = config_validation.resolve(config)
  mesh = parallel.create_mesh()
  parallel.check_batch_size(config.data.batch_size, mesh)
  nets = inference.Networks.from_config(config)
  frozen_vars = parallel.replicate(frozen_lib.load_or_init(nets.frozen, config, jax.random.key(1)), mesh)
  host_batch = random_batch(config, nets.frozen.generator.n_latent)
  state = parallel.replicate(train_step.init_state(nets, config, jax.random.key(0), host_batch), mesh)
  batch = parallel.global_batch(host_batch, mesh)
  step_fn = train_step.make_train_step(nets, mesh)

  start = time.perf_counter()
  compiled = step_fn.lower(state, frozen_vars, batch).compile()
  compile_seconds = time.perf_counter() - start
  figures = {
      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
      "batch_size": config.data.batch_size,
      "frozen_compute_dtype": config.frozen_compute_dtype,
      "remat_generator": str(config.generator.remat),
      "compile_s": compile_seconds,
  }
  if compile_only:
    return figures | analysis(compiled)
  state, metrics = compiled(state, frozen_vars, batch)
  jax.block_until_ready(metrics)

  times, nfes = [], []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = compiled(state, frozen_vars, batch)
    nfes.append(float(jax.block_until_ready(metrics)["ode/nfe"]))
    times.append(time.perf_counter() - start)

  memory_source, peak = peak_memory_bytes()
  step_time = float(np.median(times))
  figures.update({
      "median_step_s": step_time,
      "clips_per_s": config.data.batch_size / step_time,
      "ode_nfe_per_step": float(np.mean(nfes)),
      f"peak_memory_GiB ({memory_source})": peak / GIB,
  })
  return figures | analysis(compiled)


def write_random_dataset(dataset_dir, config, n_latent, num_videos=LOADER_VIDEOS, num_frames=LOADER_FRAMES, seed=0):
  """A prepared dataset with random frames and W+ at the config's shapes, in config.data.train_split."""
  d = config.data
  rng = np.random.default_rng(seed)

  def examples():
    for video in range(num_videos):
      yield dict(
          name=f"random_{video:03d}",
          frames=rng.integers(0, 256, (num_frames, d.height, d.width, 3), dtype=np.uint8),
          wplus=rng.standard_normal((num_frames, n_latent, config.generator.style_dim)).astype(np.float32),
          frame_index=np.arange(num_frames, dtype=np.int64),
          descriptions=["a random video"],
          fps=25.0,
      )

  prepared.write(dataset_dir, {d.train_split: examples()}, frame_size=(d.height, d.width),
                 wplus_shape=(n_latent, config.generator.style_dim))


def benchmark_loader(config, dataset_dir, batches):
  """Times `batches` host batches of the training input pipeline after one warm-up batch; returns a dict."""
  d = config.data
  videos = sources.PreparedVideos(prepared.open_split(dataset_dir, d.train_split))
  tokens = np.zeros((len(videos), config.clip.context_length), np.int32)  # tokenized once at start-up, not timed
  sampler = pipeline.ClipSampler(videos.frame_numbers, batch_size=d.batch_size, frames_per_clip=d.frames_per_clip,
                                 seed=config.seed)
  stream = pipeline.prefetch(pipeline.training_batches(videos, tokens, sampler, video_length=d.video_length,
                                                       first_step=0, read_threads=d.read_threads), size=d.prefetch)
  next(stream)
  start = time.perf_counter()
  for _ in range(batches):
    next(stream)
  seconds = time.perf_counter() - start
  stream.close()
  return {
      "dataset": f"{dataset_dir} split {d.train_split!r}: {len(videos)} videos of {d.height}x{d.width}",
      "batch_size": d.batch_size,
      "frames_per_clip": d.frames_per_clip,
      "read_threads": d.read_threads,
      "prefetch": d.prefetch,
      "batches_per_s": batches / seconds,
      "clips_per_s": batches * d.batch_size / seconds,
  }


def loader_main(config, dataset_dir, batches):
  """The loader needs only the shapes of the frozen networks: the published architectures stand in for them."""
  config = with_random_weights(config)
  if dataset_dir:
    return benchmark_loader(config, dataset_dir, batches)
  n_latent = frozen_lib.build(config).generator.n_latent
  folder = tempfile.mkdtemp(prefix="loader_bench_")
  try:
    write_random_dataset(folder, config, n_latent)
    return benchmark_loader(config, folder, batches)
  finally:
    shutil.rmtree(folder)


@errors.exits_on_user_error("bench")
def main(argv):
  del argv
  config = flags.FLAGS.config
  if flags.FLAGS.loader_only:
    figures = loader_main(config, flags.FLAGS.dataset_dir, flags.FLAGS.steps)
  else:
    if flags.FLAGS.random_weights:
      config = with_random_weights(config)
    figures = benchmark(config, flags.FLAGS.steps, flags.FLAGS.compile_only)
  for name, value in figures.items():
    print(f"{name:40s} {value:.4g}" if isinstance(value, float) else f"{name:40s} {value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=errors.absl_flags_parser("bench"))
