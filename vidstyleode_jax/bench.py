r"""Benchmarks the jitted train step of a config on random inputs of its shapes.

  python -m vidstyleode_jax.bench --config=configs/demo.py
  python -m vidstyleode_jax.bench --config=configs/fashion.py --random_weights --config.data.batch_size=1

Prints compile time, median step time, clips/s, ODE function evaluations per step, peak memory (the device's
allocator where it reports one, else the process's peak RSS) and XLA's cost and memory analysis of the compiled
step. --random_weights benchmarks a config whose ported weights or dataset are not at hand (same shapes, random
values). No dataset is read: the batch is random frames, inversions and token ids.
"""

import resource
import time

import jax
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from vidstyleode_jax import config_validation
from vidstyleode_jax import inference
from vidstyleode_jax import parallel
from vidstyleode_jax import train_step
from vidstyleode_jax.models import frozen as frozen_lib

config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
flags.DEFINE_integer("steps", 10, "Timed steps (after one compile-and-warm-up step).")
flags.DEFINE_bool("random_weights", False, "Ignore checkpoint and dataset paths; use random weights.")
flags.DEFINE_bool("compile_only", False, "Stop after compiling: XLA's cost and memory analysis, no timed steps.")

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
  )


def without_paths(config):
  config = config.copy_and_resolve_references()
  config.unlock()
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
  config_validation.validate(config)
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


def main(argv):
  del argv
  config = flags.FLAGS.config
  if flags.FLAGS.random_weights:
    config = without_paths(config)
  for name, value in benchmark(config, flags.FLAGS.steps, flags.FLAGS.compile_only).items():
    print(f"{name:40s} {value:.4g}" if isinstance(value, float) else f"{name:40s} {value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
