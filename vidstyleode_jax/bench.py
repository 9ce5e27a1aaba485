r"""Benchmarks the jitted train step of a config, or one part of it, on random inputs of its shapes.

  python -m vidstyleode_jax.bench --config=configs/demo.py
  python -m vidstyleode_jax.bench --config=configs/fashion.py --random_weights --config.data.batch_size=1
  python -m vidstyleode_jax.bench --config=configs/fashion.py --random_weights --part=trainable --compare_torch
  python -m vidstyleode_jax.bench --config=configs/fashion.py --random_weights --part=trainable \
      --compare_official=/path/to/VidStyleODE-official
  python -m vidstyleode_jax.bench --config=configs/fashion.py --loader_only [--dataset_dir=data/fashion]

--part=full (the default) times the whole train step. It prints compile time, median step time, clips/s, ODE
function evaluations per step, peak memory (the device's allocator where it reports one, else the process's peak
RSS), XLA's cost and memory analysis of the compiled step, and the FLOP rate (XLA's FLOPs over the median step
time) with its share of the device's peak where that is known (PEAK_TFLOPS, or --peak_tflops). --random_weights
benchmarks a config whose ported weights or dataset are not at hand: its frozen networks get the architectures of
the published checkpoints (PUBLISHED_ARCHITECTURES) and random values. No dataset is read: the batch is random
frames, inversions and token ids.

The other parts time one piece of the step, forward alone and forward + backward, with the step's batch sizes
(B videos, T clip frames, N decoded frames, k = min(clip_frames, N) CLIP frames):
  trainable  dynamics encoder, latent ODE, modulation (both branches) and mapper; forward + backward + Adam on
             mean(w^2), the W+ of both branches; also prints the ODE's function evaluations (nfe)
  generator  rendering 2 * B * N W+ latents; backward w.r.t. the latents
  dino       the DINO descriptors of 2 * B * N generated frames at the data size; backward w.r.t. the frames
  clip       the CLIP image embedding of 2 * B * k frames at the generator's size; backward w.r.t. the frames
  stages     the trainable path's stages one by one (`trainable_stages`), each on the previous stages' output;
             backward w.r.t. all trainable params of mean(out^2): where the trainable part's time goes
Forward and backward runs are interleaved; medians of wall-clock seconds (s) and of this process's CPU seconds
(cpu_s, all threads) are reported with the load average before and after. Times on a shared machine are inflated by
the others' load, CPU seconds less so; the ratios of interleaved runs are the figures to compare. Each program's
XLA cost analysis and FLOP rate are printed as for the full step.
--compare_torch (trainable only) also runs torch_trainable.TrainablePath, the same path written in PyTorch after
the original modules (float64 ODE), with the same parameter values, interleaved with ours step by step; it prints
both times, their ratio and how far the two W+ outputs are apart. It needs PyTorch installed.
--compare_official=DIR (trainable only) runs the official repository's own modules, imported from the clone DIR
(official_trainable.py), interleaved in the same way, and prints their time, ratio and nfe; their parameters have the
same count as ours but their own random values. It needs PyTorch, torchdiffeq and omegaconf.
The PyTorch paths run in a process of their own under glibc's default malloc, as PyTorch runs for its users, while
bench keeps freed host memory as training does (host_memory.py, printed as host_memory_kept); each side's times are
measured in its own process. --references_in_process builds them in bench's process instead, and then every program
runs under glibc's defaults (torch_references.py says why).

--loader_only times the input pipeline alone (no model): batches read from a prepared dataset's
config.data.train_split with config.data.read_threads threads and config.data.prefetch batches ahead, as training
reads them; it prints batches/s and clips/s. Without --dataset_dir it first writes a temporary prepared dataset
at the config's shapes (LOADER_VIDEOS videos of LOADER_FRAMES frames, random content) and deletes it afterwards.
"""

import functools
import os
import platform
import resource
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags
from ml_collections import config_flags

from vidstyleode_jax import backends
from vidstyleode_jax import config_validation
from vidstyleode_jax import errors
from vidstyleode_jax import host_memory
from vidstyleode_jax import inference
from vidstyleode_jax import official_trainable
from vidstyleode_jax import parallel
from vidstyleode_jax import torch_references
from vidstyleode_jax import train_step
from vidstyleode_jax.data import pipeline
from vidstyleode_jax.data import prepared
from vidstyleode_jax.data import sources
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import frozen as frozen_lib
from vidstyleode_jax.models import vidstyleode

PARTS = ("full", "trainable", "generator", "dino", "clip", "stages")

config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
flags.DEFINE_integer("steps", 10, "Timed steps (after one compile-and-warm-up step); with --loader_only, timed "
                     "batches (after one warm-up batch).")
flags.DEFINE_bool("random_weights", False, "Ignore checkpoint and dataset paths; use random weights.")
flags.DEFINE_bool("compile_only", False, "Stop after compiling: XLA's cost and memory analysis, no timed steps.")
flags.DEFINE_bool("loader_only", False, "Time the input pipeline alone (no model): batches/s and clips/s.")
flags.DEFINE_enum("part", "full", PARTS, "What to time: the whole train step or one part of it (see above).")
flags.DEFINE_bool("compare_torch", False, "With --part=trainable: time the PyTorch path alongside, interleaved.")
flags.DEFINE_string("compare_official", "", "With --part=trainable: time the official VidStyleODE modules, "
                    "imported from this clone of their repository, alongside, interleaved.")
flags.DEFINE_bool("references_in_process", False, "With --compare_torch or --compare_official: build the PyTorch "
                  "paths in this process, sharing its heap under glibc's defaults, instead of a process of their "
                  "own.")
flags.DEFINE_integer("torch_threads", 0, "With --compare_torch or --compare_official: torch.set_num_threads (0: "
                     "PyTorch's default, one per core). On a loaded machine 1 thread is often faster: PyTorch's "
                     "threads wait for each other at every op.")
flags.DEFINE_float("peak_tflops", 0.0, "The device's peak TFLOP/s for the FLOP utilisation bench prints (0: "
                   "PEAK_TFLOPS by device kind; none printed for other devices).")
flags.DEFINE_string("dataset_dir", "", "With --loader_only: the prepared dataset to read; empty: a temporary one "
                    "with random content at the config's frame and W+ shapes.")

LOADER_VIDEOS = 12
LOADER_FRAMES = 150

GIB = 2.0**30

# Dense peak TFLOP/s of some accelerators, by a substring of jax's device_kind (vendor datasheets,
# SXM parts): float32 on the CUDA cores, and TF32 on the tensor cores, which XLA:GPU uses for float32 dots and
# convolutions at JAX's default matmul precision. --peak_tflops overrides them.
PEAK_TFLOPS = {
    "H100": {"float32": 67.0, "tf32": 494.7},
    "H200": {"float32": 67.0, "tf32": 494.7},
    "A100": {"float32": 19.5, "tf32": 156.0},
}


RANDOM_CLIP_SPAN = 4  # a random batch's clips lie within the first RANDOM_CLIP_SPAN * data.frames_per_clip frames


def _machine():
  """The devices, and the host's CPU model, core count and widest vector extension: CPU figures differ between hosts
  of one core count, and XLA:CPU's kernels between AVX2 and AVX-512 hosts (docs/performance.md §1)."""
  model, flags = platform.processor(), set()
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      lines = f.read().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
  vector = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), "")
  return {"devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
          "host": f"{model}, {os.cpu_count()} cores" + (f", {vector}" if vector else "")}


def random_batch(config, n_latent, seed=0):
  """A host batch with the shapes and dtypes of data/pipeline.make_batch."""
  d = config.data
  rng = np.random.default_rng(seed)
  b, t = d.batch_size, d.frames_per_clip
  frame_numbers = np.concatenate([[0], np.sort(rng.choice(np.arange(1, RANDOM_CLIP_SPAN * t), t - 1,
                                                          replace=False))])
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
  """The config with the published architectures of its frozen networks, no weight paths and synthetic data.

  A prepared-data config's videos become RANDOM_CLIP_SPAN * data.frames_per_clip frames long, the span random_batch
  draws its clips from.
  """
  architectures = {}
  for name in frozen_lib.network_names(config):
    path = config[name].checkpoint
    if path:
      published = PUBLISHED_ARCHITECTURES.get(os.path.basename(os.path.normpath(path)))
      if published is None:
        raise UserError(f"--random_weights: {name}.checkpoint={path} is not one of the published checkpoints "
                        f"{sorted(PUBLISHED_ARCHITECTURES)}; port it, or set {name}.checkpoint='' and its fields")
      architectures[name] = published
  config = frozen_lib.resolve_architectures(config, architectures)
  for section in ("generator", "clip", "dino", "vgg", "psp"):
    if section in config:
      config[section].checkpoint = ""
  config.clip.tokenizer = ""
  if config.data.kind != "synthetic":
    config.data.kind = "synthetic"
    config.data.frames_per_video = RANDOM_CLIP_SPAN * config.data.frames_per_clip
  return config


def peak_memory_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return "device allocator", stats["peak_bytes_in_use"]
  return "process peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def analysis(lowered, compiled):
  """XLA's cost and memory analysis of a program, as figures.

  The FLOPs are those of the program as lowered, before the backend rewrites it: a GPU's compiled program calls
  cuDNN and cuBLAS for its convolutions and many dots, and XLA's analysis of it counts none of their FLOPs (the
  fashion generator's forward: 1.8e10 compiled for an H200, 1.8e12 as lowered). Bytes and memory are the compiled
  program's.
  """
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  figures = {
      "xla_flops_per_step": float(lowered.cost_analysis().get("flops", float("nan"))),
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


def utilisation(flops, seconds, peak_tflops=0.0):
  """Achieved TFLOP/s of XLA's cost analysis over a measured time, and its share of the device's peak (PEAK_TFLOPS,
  or peak_tflops where given). Under remat XLA counts a loop's body once, so these understate the work done."""
  achieved = flops / seconds / 1e12
  figures = {"xla_TFLOP/s": achieved}
  kind = jax.devices()[0].device_kind
  peaks = {"given": peak_tflops} if peak_tflops else next(
      (peaks for name, peaks in PEAK_TFLOPS.items() if name in kind), {})
  for precision, peak in peaks.items():
    figures[f"flop_utilisation ({precision} peak {peak:g} TFLOP/s)"] = achieved / peak
  return figures


def benchmark(config, steps, compile_only=False, peak_tflops=0.0):
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
  lowered = step_fn.lower(state, frozen_vars, batch)
  compiled = lowered.compile()
  compile_seconds = time.perf_counter() - start
  figures = {
      **_machine(),
      "batch_size": config.data.batch_size,
      "frozen_compute_dtype": config.frozen_compute_dtype,
      "remat (generator, clip, dino)": str((config.generator.remat, config.clip.remat, config.dino.remat)),
      "compile_s": compile_seconds,
  }
  if compile_only:
    return figures | analysis(lowered, compiled)
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
  figures |= analysis(lowered, compiled)
  return figures | utilisation(figures["xla_flops_per_step"], step_time, peak_tflops)


def trainable_inputs(config, n_latent, seed=0):
  """Random inputs of VidStyleODE.__call__ at the config's sizes, with two style tokens (both branches)."""
  d, rng = config.data, np.random.default_rng(seed)
  b, t = d.batch_size, d.frames_per_clip
  times = random_batch(config, n_latent, seed)["times"][0]
  return dict(
      frames=rng.uniform(size=(b, t, config.dynamics.height, config.dynamics.width, 3)).astype(np.float32),
      times=times,
      mask=np.ones((b, t), np.float32),
      query_times=times[np.round(np.linspace(0, t - 1, d.frames_decoded)).astype(int)],
      content=rng.standard_normal((b, n_latent, config.generator.style_dim)).astype(np.float32),
      styles=tuple(rng.standard_normal((b, config.modulation.width)).astype(np.float32) for _ in range(2)),
  )


def _positional(inputs):
  return [inputs[name] for name in vidstyleode.CALL_ARGUMENTS]


def init_trainable(model, inputs):
  """The trainable params (seed 0) for `trainable_inputs`."""
  return jax.jit(model.init)(jax.random.key(0), *_positional(inputs))


def trainable_programs(nets, config, inputs):
  """The trainable path: forward, and one step of forward + backward + Adam on mean(w^2) of both branches."""
  model, optimizer = nets.model, train_step.make_optimizer(config)
  params = init_trainable(model, inputs)
  apply = lambda params, inputs: model.apply(params, *_positional(inputs))

  def forward(params, inputs):
    w, _, stats = apply(params, inputs)
    return w, stats["nfe"]

  def step(params, opt_state, inputs):
    def loss(params):
      w, _, stats = apply(params, inputs)
      return jnp.mean(jnp.square(w)), stats["nfe"]

    (_, nfe), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, nfe

  step_params = jax.tree.map(jnp.copy, params)  # the step donates its params
  return params, {"forward": (forward, (params, inputs), 0), "forward+backward+adam": (
      step, (step_params, optimizer.init(params), inputs), 2)}


def trainable_stages(model, params, inputs):
  """{stage: (fn(params, stage_input) -> stage output, stage_input)} at the inputs' sizes, in the order they run.

  "encode" includes "frame_encoder". Each stage's input is the previous stages' output for `params`: the frames for
  the frame encoder and the ODE-RNN ("encode"), z0 for the latent ODE ("solve"), z at the query times for the
  modulation network and the mapper of both branches ("styled_latents").
  """
  call = lambda method: functools.partial(model.apply, method=method)
  frames = inputs["frames"].reshape((-1,) + inputs["frames"].shape[2:])
  encode = lambda params, x: call(vidstyleode.VidStyleODE.encode)(params, x["frames"], x["times"], x["mask"])
  solve = lambda params, x: call(vidstyleode.VidStyleODE.solve)(params, x["z0"], x["query_times"])[0]
  styled = lambda params, x: call(vidstyleode.VidStyleODE.styled_latents)(params, x["z_t"], x["content"], x["styles"])
  encode_input = {name: inputs[name] for name in ("frames", "times", "mask")}
  solve_input = dict(z0=jax.jit(encode)(params, encode_input), query_times=inputs["query_times"])
  styled_input = dict(z_t=jax.jit(solve)(params, solve_input), content=inputs["content"],
                      styles=np.stack(inputs["styles"]))
  return {
      "frame_encoder": (lambda params, x: call(lambda m, f: m.dynamics.frame_encoder(f))(params, x), frames),
      "encode": (encode, encode_input),
      "solve": (solve, solve_input),
      "styled_latents": (styled, styled_input),
  }


def stage_programs(model, inputs):
  """Forward, and the gradient of mean(out^2) w.r.t. the trainable params, of each of `trainable_stages`."""
  params, programs = init_trainable(model, inputs), {}
  for stage, (fn, stage_input) in trainable_stages(model, params, inputs).items():
    mean_square = lambda params, x, fn=fn: jnp.mean(jnp.square(fn(params, x)))
    programs[f"{stage} forward"] = (fn, (params, stage_input), 0)
    programs[f"{stage} forward+backward"] = (jax.grad(mean_square), (params, stage_input), 0)
  return params, programs


def frozen_part_programs(part, nets, config, frozen_vars, seed=0):
  """Forward, and forward + backward w.r.t. the input, of one frozen network at the train step's batch sizes."""
  d, rng = config.data, np.random.default_rng(seed)
  frozen = nets.frozen
  rows = 2 * d.batch_size * d.frames_decoded
  if part == "generator":
    inputs = rng.standard_normal((rows, frozen.generator.n_latent, config.generator.style_dim)).astype(np.float32)
    fn = frozen.render
  elif part == "dino":
    inputs = rng.uniform(size=(rows, d.height, d.width, 3)).astype(np.float32)
    fn = frozen.dino_features
  else:
    height = config.generator.resolution
    inputs = rng.uniform(-1, 1, (2 * d.batch_size * min(config.loss.clip_frames, d.frames_decoded), height,
                                 height // config.generator.aspect, 3)).astype(np.float32)
    fn = frozen.clip_image
  scalar = lambda variables, x: sum(jnp.sum(jnp.square(y)) for y in jax.tree.leaves(fn(variables, x)))
  return {"forward": (fn, (frozen_vars, inputs), 0),
          "forward+backward": (jax.grad(scalar, argnums=1), (frozen_vars, inputs), 0)}


def _load():
  return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def benchmark_part(config, part, steps, compile_only=False, compare_torch=False, torch_threads=0,
                   compare_official="", peak_tflops=0.0, references_in_process=False):
  """Compiles and times the forward and the forward + backward programs of one part; returns a dict of figures."""
  config = config_validation.resolve(config)
  for flag, value in (("--compare_torch", compare_torch), ("--compare_official", compare_official)):
    if value and part != "trainable":
      raise app.UsageError(f"{flag} applies to --part=trainable only")
  if compare_official:
    official_trainable.check_clone(compare_official)
  nets = inference.Networks.from_config(config)
  n_latent = nets.frozen.generator.n_latent
  figures = {**_machine(), "part": part, "batch_size": config.data.batch_size, "load_before": _load()}
  if part in ("trainable", "stages"):
    inputs = trainable_inputs(config, n_latent)
    if part == "trainable":
      params, programs = trainable_programs(nets, config, inputs)
    else:
      params, programs = stage_programs(nets.model, inputs)
    figures["params"] = sum(x.size for x in jax.tree.leaves(params))
  else:
    frozen_vars = frozen_lib.load_or_init(nets.frozen, config, jax.random.key(1))
    programs = frozen_part_programs(part, nets, config, frozen_vars)

  compiled, arguments = {}, {}
  for name, (fn, args, carry) in programs.items():
    start = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=tuple(range(carry)), compiler_options=backends.compiler_options()
                      ).lower(*args)
    compiled[name] = lowered.compile()
    figures[f"{name}: compile_s"] = time.perf_counter() - start
    figures.update({f"{name}: {key}": value for key, value in analysis(lowered, compiled[name]).items()})
    arguments[name] = list(args)
  if compile_only:
    return figures

  times, nfes = {}, {}

  def timed(name, clocked_run, *args):
    result, seconds = clocked_run(*args)
    for clock, value in seconds.items():
      times.setdefault((name, clock), []).append(value)
    return result

  def run(name):
    out = jax.block_until_ready(compiled[name](*arguments[name]))
    carry = programs[name][2]
    if carry:
      arguments[name][:carry] = out[:carry]
    return out

  references, labels = None, []  # the PyTorch paths timed beside ours (torch_references.py)
  if compare_torch or compare_official:
    kind = torch_references.InProcess if references_in_process else torch_references.Worker
    references = kind(config, params, inputs, compare_torch, compare_official, torch_threads)
    labels = list(references.params)
    figures["references_process"] = "this one" if references_in_process else "their own"
    figures["torch_threads"] = references.threads
  try:
    for label, count in references.params.items() if references else ():
      figures[f"{label}_params"] = count
      if count != figures["params"]:
        raise AssertionError(f"the {label} path has {count} params, ours {figures['params']}")
    if compare_torch:
      (w_torch, _), _ = references.run("torch", "forward")
      w_ours = np.asarray(compiled["forward"](*arguments["forward"])[0])
      scale = config.mapper.delta_scale
      figures["torch_vs_ours: max |delta difference|"] = float(np.abs(w_torch - w_ours).max() / scale)
      figures["torch_vs_ours: max |delta|"] = float(np.abs(w_ours - inputs["content"][None, :, None]).max() / scale)
    for name in compiled:  # warm-up
      run(name)
      for label in labels:
        references.run(label, name)
    for _ in range(steps):
      for name in compiled:
        out = timed(name, torch_references.clocked, run, name)
        if part == "trainable":
          nfes.setdefault(name, []).append(int(out[-1]))
        for label in labels:
          nfes.setdefault(f"{label} {name}", []).append(timed(f"{label} {name}", references.run, label, name)[1])
  finally:
    if references:
      references.close()
  for (name, clock), values in times.items():
    figures[f"{name}: median_{clock}"] = float(np.median(values))
  for name, values in nfes.items():
    figures[f"{name}: ode_nfe"] = float(np.mean(values))
  for name in compiled:
    figures.update({f"{name}: {key}": value for key, value in utilisation(
        figures[f"{name}: xla_flops_per_step"], figures[f"{name}: median_s"], peak_tflops).items()})
  for label in labels:
    for name in compiled:
      for clock in torch_references.CLOCKS:
        figures[f"{name}: {label} / ours ({clock})"] = (
            figures[f"{label} {name}: median_{clock}"] / figures[f"{name}: median_{clock}"])
  figures["load_after"] = _load()
  return figures


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
                                 seed=config.seed, clip_span=d.clip_span)
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
  # A PyTorch path in this process would share the kept heap with ours, which left our step slower (host_memory.py).
  compares_here = flags.FLAGS.references_in_process and (flags.FLAGS.compare_torch or flags.FLAGS.compare_official)
  kept = not compares_here and host_memory.keep_freed_memory()
  config = flags.FLAGS.config
  if flags.FLAGS.loader_only:
    figures = loader_main(config, flags.FLAGS.dataset_dir, flags.FLAGS.steps)
  else:
    if flags.FLAGS.random_weights:
      config = with_random_weights(config)
    if flags.FLAGS.part == "full":
      figures = benchmark(config, flags.FLAGS.steps, flags.FLAGS.compile_only, flags.FLAGS.peak_tflops)
    else:
      figures = benchmark_part(config, flags.FLAGS.part, flags.FLAGS.steps, flags.FLAGS.compile_only,
                               flags.FLAGS.compare_torch, flags.FLAGS.torch_threads, flags.FLAGS.compare_official,
                               flags.FLAGS.peak_tflops, flags.FLAGS.references_in_process)
  figures["host_memory_kept"] = kept
  for name, value in figures.items():
    print(f"{name:40s} {value:.4g}" if isinstance(value, float) else f"{name:40s} {value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=errors.absl_flags_parser("bench"))
