r"""Trains variants of configs/ablations.py on the demo data for one budget and writes one comparison table.

  python -m vidstyleode_jax.ablations --workdir=runs/ablations --num_steps=300
  python -m vidstyleode_jax.ablations --workdir=runs/ablations --num_steps=300 \
      --variants=periodic_ode,periodic_ode2 --gif=docs/periodic_extrapolation.gif
  python -m vidstyleode_jax.ablations --workdir=runs/ablations_windows --base=windows --num_steps=3000 \
      --variants=full,ode2,periodic_ode,periodic_ode2

Each variant trains in WORKDIR/VARIANT (train.train: an unfinished run resumes, a finished one is only evaluated).
Then the held-out demo videos are continued past their data.frames_per_video frames (the same videos, longer:
data/sources.synthetic_videos), the encoder sees data.frames_per_clip evenly spaced frames of the observed window,
z_C comes from those frames (model.content), and the model decodes every frame up to two motion periods past the
window. The observed window is what a training clip spans: the first data.clip_span frames, or with clip_span=0
the first data.frames_per_video (as long as the training videos). Reported, as the MSE
of the frames in [-1, 1] at the data size averaged over the held-out videos (docs/model.md §21.7):
  rec: the frames of the observed window, observed or not;
  extrap_1, extrap_2: the first and the second motion period after the window (each video its own period);
  content: rendering z_C at every frame of the window, the baseline of a model that learned no motion;
  motion_rec, motion_extrap_1, motion_extrap_2: the same windows, on the motion alone: in each window, the frames
    minus their mean over that window, decoded and true (a constant appearance error drops out, and so does an
    offset that a drift past the window adds to another window);
  still, still_extrap_1, still_extrap_2: the motion error of a model whose frames do not move in that window (the
    true frames' variance over time there), the baseline of motion_rec, motion_extrap_1 and motion_extrap_2.
Then `python -m vidstyleode_jax.evaluate` scores each variant's held-out videos with the paper's metrics (its own
file in the variant's folder; --evaluate_flags adds flags, e.g. the ported metric networks' folders: without them
FVD, FID, IS and the warping error are skipped, and PSNR, SSIM and CLIP accuracy remain), in a second table.
WORKDIR/comparison.md and comparison.json receive the tables. --gif writes extrapolations of the first held-out
videos by the first- and second-order periodic runs beside the truth.
"""

import json
import os
import shlex

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from vidstyleode_jax import backends
from vidstyleode_jax import config_files
from vidstyleode_jax import errors
from vidstyleode_jax import evaluate as evaluate_lib
from vidstyleode_jax import files
from vidstyleode_jax import heldout
from vidstyleode_jax import host_memory
from vidstyleode_jax import inference
from vidstyleode_jax import train
from vidstyleode_jax import video_io
from vidstyleode_jax.apps import trained_run
from vidstyleode_jax.data import sources
from vidstyleode_jax.errors import UserError

HORIZONS = (1, 2)  # motion periods past the observed window
COLUMNS = ("rec", "extrap_1", "extrap_2", "content", "motion_rec", "motion_extrap_1", "motion_extrap_2", "still",
           "still_extrap_1", "still_extrap_2")
GIF_RUNS = {"first order": "periodic_ode", "second order": "periodic_ode2"}
GIF_FPS = 8.0
GIF_SCALE = 4  # nearest-neighbour upscaling of the demo's small frames in the gif

# --workdir (defined by vidstyleode_jax.train): the folder of the runs (one per variant) and of the table.
flags.DEFINE_string("config_file", "configs/ablations.py", "The variants' config file.")
flags.DEFINE_string("base", "demo", "The variants' base config: demo, or windows (configs/demo.py:windows).")
flags.DEFINE_integer("num_steps", 300, "Training steps of every variant.")
flags.DEFINE_integer("seed", None, "config.seed of every variant (default: the config's): the demo's frozen "
                     "networks, videos and the initial params all change with it.")
flags.DEFINE_list("variants", None, "Variants of configs/ablations.py to train and compare (default: all).")
flags.DEFINE_integer("eval_max_steps", 4096, "dynamics.max_steps for the long evaluation solves.")
flags.DEFINE_string("gif", None, "Also write this gif: first order | second order | truth on periodic videos.")
flags.DEFINE_integer("gif_videos", 2, "Held-out videos in the gif.")
flags.DEFINE_bool("evaluate", True, "Also score every variant with `python -m vidstyleode_jax.evaluate`.")
flags.DEFINE_string("evaluate_flags", "", "More flags of `python -m vidstyleode_jax.evaluate` for every variant, "
                    "e.g. '--i3d=ported/i3d_k400 --inception=ported/inception_pool3'.")


def variant_config(config_file, variant, num_steps, seed=None, base="demo"):
  """The config of `variant` on `base` (configs/ablations.py) trained for num_steps, evaluated and checkpointed only
  at the end; `seed`, if given, replaces config.seed."""
  config = config_files.load(f"{config_file}:{base}/{variant}")
  if config.data.kind != "synthetic":
    raise UserError(f"--base={base}: the comparison runs on the demo's synthetic videos; expected a demo base")
  config.train.update(num_steps=num_steps, checkpoint_every=num_steps, sample_every=num_steps)
  if seed is not None:
    config.seed = seed
  return config


def observed_window(data):
  """Frames at the start of a held-out video that the model observes: data.clip_span, or the whole training
  video's data.frames_per_video when clip_span is 0."""
  return data.clip_span or data.frames_per_video


def observed_frame_numbers(data):
  """The data.frames_per_clip frame numbers the encoder sees, evenly spaced over the observed window."""
  return heldout.eval_frame_numbers(np.arange(data.frames_per_video), data.frames_per_clip, data.clip_span)


def long_eval_videos(run):
  """The run's held-out videos continued to (1 + len(HORIZONS)) * data.frames_per_video frames."""
  window = run.config.data.frames_per_video
  return sources.synthetic_videos(run.config, run.nets.frozen, run.frozen_vars, "eval",
                                  num_frames=(1 + len(HORIZONS)) * window)


def make_decode(nets):
  """-> jitted (params, frozen_vars, frames01, wplus, times, query_times) -> (frames at the data size [b, N, H, W, 3],
  z_C rendered [b, H, W, 3]), from the observed frames01 [b, T, ...] and their inversions at `times`."""

  def decode(params, frozen_vars, frames01, wplus, times, query_times):
    mask = jnp.ones(frames01.shape[:2])
    _, frames = inference.reconstruct(nets, params, frozen_vars, frames01, wplus, times, mask, query_times)
    content = inference.content_code(nets.config, wplus)
    return frames, inference.render_frames(nets, frozen_vars, content)[1]

  return jax.jit(decode, compiler_options=backends.compiler_options())


def extrapolate(run, videos):
  """Decodes every frame of `videos` from the observed window. -> (frames [b, L, H, W, 3] in about [-1, 1],
  content frames [b, H, W, 3])."""
  d = run.config.data
  observed = observed_frame_numbers(d)
  all_times = (np.arange(videos.frames.shape[1]) / d.video_length).astype(np.float32)
  frames01 = videos.frames[:, observed].astype(np.float32) / 255.0
  frames, content = make_decode(run.nets)(run.params, run.frozen_vars, frames01, videos.wplus[:, observed],
                                          all_times[observed], all_times)
  return np.asarray(frames), np.asarray(content)


def window_ranges(window, periods, num_frames):
  """window: observed frames; periods: [videos] frames; num_frames: frames decoded per video.

  Returns {"rec": frames [0, window), "extrap_h": frames [window + (h-1) P, window + h P) with P the video's period,
  rounded}, each a list of (start, stop), one per video.
  """
  ranges = {"rec": [(0, window)] * len(periods)}
  for horizon in HORIZONS:
    ranges[f"extrap_{horizon}"] = []
    for period in np.round(periods).astype(int):
      start = window + (horizon - 1) * period
      if start + period > num_frames:
        raise ValueError(f"horizon {horizon} of a {period}-frame period needs {start + period} frames, "
                         f"the videos have {num_frames}")
      ranges[f"extrap_{horizon}"].append((start, start + period))
  return ranges


def window_errors(frame_errors, window, periods):
  """frame_errors: [videos, L] per-frame MSE. -> {name: the mean over each video's range (window_ranges), averaged
  over the videos}."""
  return {name: float(np.mean([np.mean(errors_v[start:stop]) for errors_v, (start, stop) in zip(frame_errors, spans)]))
          for name, spans in window_ranges(window, periods, frame_errors.shape[1]).items()}


def motion_errors(frames, real, window, periods):
  """frames, real: [videos, L, ...]. -> for each range of window_ranges, averaged over the videos: "motion_" + name,
  the MSE of the decoded frames against the true ones, each minus its own mean over the range; and the same for
  frames that do not move, "still" (the observed window) or "still_" + name (the true frames' variance there)."""
  centred = lambda x: x - np.mean(x, axis=0, keepdims=True)
  errors = {}
  for name, spans in window_ranges(window, periods, frames.shape[1]).items():
    pairs = [(centred(f[start:stop]), centred(r[start:stop])) for f, r, (start, stop) in zip(frames, real, spans)]
    errors[f"motion_{name}"] = float(np.mean([np.mean(np.square(f - r)) for f, r in pairs]))
    errors["still" if name == "rec" else f"still_{name}"] = float(np.mean([np.mean(np.square(r)) for _, r in pairs]))
  return errors


def evaluate(run):
  """The comparison numbers of one trained run (see the module docstring), and its parameter count."""
  videos = long_eval_videos(run)
  frames, content = extrapolate(run, videos)
  real = videos.frames.astype(np.float32) / 127.5 - 1.0
  metrics = frame_metrics(frames, content, real, observed_window(run.config.data), videos.periods)
  metrics["params"] = int(sum(x.size for x in jax.tree.leaves(run.params)))
  return metrics


def frame_metrics(frames, content, real, window, periods):
  """frames, real: [videos, L, H, W, 3] decoded and true, in [-1, 1]; content: [videos, H, W, 3] z_C rendered;
  window: observed frames; periods: [videos] frames. -> {column: value} for COLUMNS (the module docstring)."""
  metrics = window_errors(np.mean(np.square(frames - real), axis=(2, 3, 4)), window, periods)
  metrics["content"] = float(np.mean(np.square(content[:, None] - real[:, :window])))
  metrics.update(motion_errors(frames, real, window, periods))
  return metrics


def comparison_table(results, num_steps, paper_rows, base="demo"):
  """Markdown: one section per demo motion, one row per variant; paper_rows: variant -> the paper's row."""
  seeds = ", ".join(str(seed) for seed in sorted({m["seed"] for m in results.values()}))
  lines = [f"Held-out frame MSE in [-1, 1] after {num_steps} training steps with seed {seeds} on base `{base}` "
           "(`python -m vidstyleode_jax.ablations`); rec: observed window; extrap_h: h-th motion period after it; "
           "content: z_C at every frame; motion_*: the same on the frames minus their mean over each window; "
           "still, still_*: motion_rec, motion_* of frames that do not move."]
  for motion in ("sinusoid", "periodic"):
    rows = [(name, m) for name, m in results.items() if m["motion"] == motion]
    if not rows:
      continue
    lines += ["", f"Demo motion `{motion}`:", "",
              "| variant | paper row | params | " + " | ".join(COLUMNS) + " |", "|---|---|---|" + "---|" * len(COLUMNS)]
    for name, m in rows:
      lines.append(f"| {name} | {paper_rows[name]} | {m['params']:,} | "
                   + " | ".join(f"{m[column]:.4f}" for column in COLUMNS) + " |")
  return "\n".join(lines) + "\n"


def evaluate_variant(run_dir, evaluate_flags=""):
  """`python -m vidstyleode_jax.evaluate --workdir=RUN_DIR EVALUATE_FLAGS`, its file written where that command
  writes it. Returns ({"SET METRIC": value} with an IS's mean, {skipped metric: why})."""
  args = evaluate_lib.build_parser().parse_args(["--workdir", run_dir, "--no_progress", *shlex.split(evaluate_flags)])
  document, out, _ = evaluate_lib.evaluate(args)
  evaluate_lib.write_document(document, out)
  scores = {f"{name} {metric}": value["mean"] if isinstance(value, dict) else value
            for name, values in document["metrics"].items() for metric, value in values.items()}
  return scores, document["skipped"]


def evaluation_table(evaluations, evaluate_flags=""):
  """Markdown: one row per variant of its `evaluate` scores; evaluations: variant -> evaluate_variant's result."""
  columns = list(dict.fromkeys(column for scores, _ in evaluations.values() for column in scores))
  command = " ".join(["python -m vidstyleode_jax.evaluate --workdir=WORKDIR/VARIANT", evaluate_flags]).strip()
  lines = [f"The paper's metrics on each variant's held-out videos (`{command}`; sets: real, reconstruction, edit):",
           "", "| variant | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
  for name, (scores, _) in evaluations.items():
    lines.append(f"| {name} | " + " | ".join(f"{scores[c]:.4g}" if c in scores else "-" for c in columns) + " |")
  skipped = {metric: why for _, skips in evaluations.values() for metric, why in skips.items()}
  if skipped:
    lines += [""] + [f"Skipped {metric}: {why}" for metric, why in skipped.items()]
  return "\n".join(lines) + "\n"


def write_gif(path, runs, num_videos):
  """First-order | second-order | truth on the first held-out periodic videos, from the middle of the observed
  window to two periods past it."""
  columns = {}
  for title, run in runs.items():
    videos = long_eval_videos(run)
    columns[title] = extrapolate(run, videos)[0][:num_videos]
  columns["truth"] = videos.frames[:num_videos]
  first = observed_window(run.config.data) // 2
  columns = {title: frames[:, first:].repeat(GIF_SCALE, axis=2).repeat(GIF_SCALE, axis=3)
             for title, frames in columns.items()}
  video_io.write_gif(path, video_io.video_grid(columns), GIF_FPS)


@errors.exits_on_user_error("ablations")
def main(argv):
  del argv
  host_memory.keep_freed_memory()
  workdir, num_steps, config_file = flags.FLAGS.workdir, flags.FLAGS.num_steps, flags.FLAGS.config_file
  if not os.path.isfile(config_file):
    raise UserError(f"--config_file: {config_file} not found")
  module = config_files.sibling(config_file, os.path.splitext(os.path.basename(config_file))[0])
  paper_rows = {name: row for name, (row, _) in module.VARIANTS.items()}
  variants = flags.FLAGS.variants or list(paper_rows)
  unknown = sorted(set(variants) - set(paper_rows))
  if unknown:
    raise UserError(f"--variants: unknown {unknown}; expected names of {sorted(paper_rows)}")
  results, evaluations = {}, {}
  for variant in variants:
    run_dir = os.path.join(workdir, variant)
    config = variant_config(config_file, variant, num_steps, flags.FLAGS.seed, flags.FLAGS.base)
    train.train(config, run_dir, progress=False)
    run = trained_run.load(run_dir, ode_max_steps=flags.FLAGS.eval_max_steps)
    results[variant] = dict(evaluate(run), motion=run.config.data.motion, seed=run.config.seed)
    if flags.FLAGS.evaluate:
      evaluations[variant] = evaluate_variant(run_dir, flags.FLAGS.evaluate_flags)
      results[variant]["evaluate"] = evaluations[variant][0]
    print(variant, results[variant], flush=True)
  files.write_text(os.path.join(workdir, "comparison.json"), json.dumps(results, indent=2) + "\n")
  table = comparison_table(results, num_steps, paper_rows, flags.FLAGS.base)
  if evaluations:
    table += "\n" + evaluation_table(evaluations, flags.FLAGS.evaluate_flags)
  files.write_text(os.path.join(workdir, "comparison.md"), table)
  print(table)
  if flags.FLAGS.gif:
    runs = {title: trained_run.load(os.path.join(workdir, name), ode_max_steps=flags.FLAGS.eval_max_steps)
            for title, name in GIF_RUNS.items()}
    write_gif(flags.FLAGS.gif, runs, flags.FLAGS.gif_videos)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main, flags_parser=errors.absl_flags_parser("ablations"))
