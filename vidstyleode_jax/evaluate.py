r"""The paper's metrics (Table 1) for a trained run, on its held-out videos: one JSON file.

  python -m vidstyleode_jax.evaluate --workdir=runs/fashion [--split=test] \
      [--metrics=fvd,fid,is,warp,clip_acc,rec] [--num_videos=N] [--targets=FILE] [--out=FILE.json]

The run is restored as the applications restore it (apps/trained_run.py). Its held-out videos are the prepared
dataset's evaluation split (config.data.eval_split, or --split), or for the demo the rendered videos of
WORKDIR/demo_data/eval.npz, read through their video source (data/sources.py). Each video gives one clip
(evaluation_plan.py: by default 12 frames at 10 fps, as the paper's FVD). The clip is reconstructed (all its frames
encoded, W+ decoded at the same times, content from the W+ of its frames as the run's model.content says) and edited
toward a target text with the style moved by alpha * (CLIP_text(target) - CLIP_text(description)); both are rendered
at the data size and rounded to uint8 as a saved video would be. Then, batched and jitted (docs/metrics_protocol.md):
  rec       PSNR and SSIM of every reconstructed frame against the real one;
  fvd       Fréchet distance of I3D features: real clips vs reconstructed clips, and vs edited clips;
  fid       Fréchet distance of Inception pool3 on one frame per clip, likewise;
  is        Inception score of that frame, for the real, reconstructed and edited frames;
  warp      warping error of the real, reconstructed and edited clips, with RAFT flows of the real clip;
  clip_acc  CLIP manipulation accuracy and target similarity of the edits (of the reconstructions as a baseline).
Without --metrics, a metric whose network folder is missing or that the video count does not allow is skipped
(listed under "skipped" in the JSON); a metric asked for by --metrics that cannot run is an error. The same flags
and seed give the same file.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from vidstyleode_jax import errors
from vidstyleode_jax import evaluation_plan
from vidstyleode_jax import files
from vidstyleode_jax import host_memory
from vidstyleode_jax import inference
from vidstyleode_jax import metric_networks
from vidstyleode_jax import video_io
from vidstyleode_jax.apps import trained_run
from vidstyleode_jax.data import sources
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.metrics import clip_accuracy
from vidstyleode_jax.metrics import frechet
from vidstyleode_jax.metrics import inception_score
from vidstyleode_jax.metrics import reconstruction
from vidstyleode_jax.metrics import warping
from vidstyleode_jax.models import i3d

METRICS = ("fvd", "fid", "is", "warp", "clip_acc", "rec")
# The network each metric needs: its role in metric_networks, which is also the flag naming its ported folder.
NETWORKS = {"fvd": "i3d", "fid": "inception", "is": "inception_is", "warp": "raft"}
DEFAULT_FOLDERS = {"i3d": "ported/i3d_k400", "inception": "ported/inception_pool3",
                   "inception_is": "ported/inception_is", "raft": "ported/raft_large"}
GENERATED = ("reconstruction", "edit")
SETS = ("real",) + GENERATED
DEMO_HELD_OUT = "demo_eval"  # the label of the demo's held-out videos (WORKDIR/demo_data/eval.npz)


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m vidstyleode_jax.evaluate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="The training run: config.json and checkpoints/ (the latest "
                      "step is restored).")
  parser.add_argument("--config", help="configs/*.py or a config.json, for runs without WORKDIR/config.json.")
  parser.add_argument("--split", help="Split of the prepared dataset (default: the run's data.eval_split). The "
                      "demo's held-out videos have no splits.")
  parser.add_argument("--metrics", help=f"Comma-separated, of {','.join(METRICS)} (default: every metric whose "
                      "network folder exists).")
  parser.add_argument("--num_videos", type=int, help="Evaluate the first N videos of the split (default: all).")
  parser.add_argument("--targets", metavar="FILE", help="Edit targets, one text per line: one line for every video, "
                      "or one line per evaluated video (default: the description of another held-out video, a "
                      "seeded cycle).")
  parser.add_argument("--out", metavar="FILE.json", help="The results file (default: "
                      f"WORKDIR/{files.EVALUATION_FILE.format(held_out='SPLIT')}).")
  parser.add_argument("--seed", type=int, default=0, help="Seed of the clip starts, the FID frames and the edit "
                      "targets.")
  parser.add_argument("--alpha", type=float, help="Edit strength (default: the run's loss.manipulation_strength).")
  parser.add_argument("--clip_frames", type=int, default=12, help="Frames per clip (the paper's FVD: 12; "
                      "StyleGAN-V's fvd2048_16f: 16). FVD needs at least 9.")
  parser.add_argument("--clip_fps", type=float, default=10.0, help="Frame rate of the clip (the paper: 10); 0 takes "
                      "consecutive frames (StyleGAN-V's protocol).")
  parser.add_argument("--source_fps", type=float, help="Frame rate of the videos, for datasets that do not record it "
                      "(frame folders); without it such videos give consecutive frames.")
  parser.add_argument("--is_splits", type=int, default=inception_score.NUM_SPLITS, help="IS splits (needs at "
                      "least this many videos).")
  for role, folder in DEFAULT_FOLDERS.items():
    parser.add_argument(f"--{role}", default=folder, help=f"Ported folder of the {role} network (create it with "
                        f"`{metric_networks.PORT_COMMANDS[role].replace('DST', folder)}`).")
  parser.add_argument("--raft_updates", type=int, default=12, help="RAFT refinement iterations (torchvision's "
                      "default: 12).")
  parser.add_argument("--batch_size", type=int, default=4, help="Videos per jitted call (bounds memory).")
  parser.add_argument("--ode_max_steps", type=int, help="Override config.dynamics.max_steps.")
  parser.add_argument("--no_progress", action="store_true", help="Hide the progress bar.")
  return parser


def check_flags(args):
  """Raises UserError on a flag value that cannot work, before anything is loaded."""
  for name in ("num_videos", "batch_size", "is_splits", "raft_updates", "ode_max_steps", "source_fps"):
    value = getattr(args, name)
    if value is not None and value <= 0:
      raise UserError(f"--{name}={value}: must be positive")
  if args.clip_frames < 2:
    raise UserError(f"--clip_frames={args.clip_frames}: a clip needs at least 2 frames")
  if args.clip_fps < 0:
    raise UserError(f"--clip_fps={args.clip_fps:g}: must be positive, or 0 for consecutive frames")
  if args.targets is not None and not os.path.isfile(args.targets):
    raise UserError(f"--targets {args.targets}: file not found")
  if args.out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
    raise UserError(f"--out {args.out}: its folder does not exist")


def choose_metrics(args):
  """-> (metrics to run, {metric: why it is skipped}); a metric named in --metrics that cannot run is a UserError."""
  explicit = args.metrics is not None
  requested = [m.strip() for m in args.metrics.split(",") if m.strip()] if explicit else list(METRICS)
  unknown = sorted(set(requested) - set(METRICS))
  if unknown or not requested:
    raise UserError(f"--metrics={args.metrics}: " + (f"unknown {unknown}; " if unknown else "")
                    + f"expected a comma-separated subset of {','.join(METRICS)}")
  problems = {}
  if args.clip_frames < i3d.MIN_FRAMES:
    problems["fvd"] = f"I3D needs clips of at least {i3d.MIN_FRAMES} frames (--clip_frames={args.clip_frames})"
  for metric, role in NETWORKS.items():
    folder = getattr(args, role)
    if metric not in problems and not os.path.isdir(folder):
      problems[metric] = f"--{role}: " + metric_networks.missing_folder_message(role, folder)
  return check_runnable(requested, problems, explicit)


def check_runnable(requested, problems, explicit):
  """Splits `requested` by `problems` ({metric: reason}); raises the first problem of an explicitly asked metric."""
  for metric in requested:
    if explicit and metric in problems:
      raise UserError(f"--metrics {metric}: {problems[metric]}")
  return [m for m in requested if m not in problems], {m: problems[m] for m in requested if m in problems}


def count_problems(metrics, num_videos, is_splits, has_targets):
  """{metric: reason} for the metrics that the number of evaluated videos does not allow."""
  needs = {"fvd": 2, "fid": 2, "is": is_splits, "clip_acc": 1 if has_targets else 2}
  reasons = {"fvd": "a Fréchet distance", "fid": "a Fréchet distance", "is": f"--is_splits={is_splits}",
             "clip_acc": "editing toward another video's description (or give --targets)"}
  return {m: f"{reasons[m]} needs at least {needs[m]} videos, {num_videos} evaluated"
          for m in metrics if m in needs and num_videos < needs[m]}


def held_out_videos(run, split):
  """(video source, tokens [videos, context] of their descriptions, tokenizer, label, where) of the held-out set."""
  config = run.config.copy_and_resolve_references()
  if config.data.kind == "synthetic":
    if split is not None:
      raise UserError(f"--split {split}: the demo's held-out videos ({files.DEMO_DATA_DIR}/eval.npz) have no splits")
    label, where = DEMO_HELD_OUT, os.path.join(run.workdir, files.DEMO_DATA_DIR, "eval.npz")
  else:
    if split is not None:
      config.data.eval_split = split
    label, where = config.data.eval_split, f"split {config.data.eval_split!r} of {config.data.dataset_dir}"
  datasets = sources.load(config, run.nets.frozen, run.frozen_vars, run.workdir)
  return datasets.eval, datasets.eval_tokens, datasets.tokenizer, label, where


def edit_targets(args, descriptions, tokens, tokenizer):
  """(target texts, their tokens [videos, context]): the --targets file's, or the seeded cycle's descriptions."""
  if args.targets is None:
    target_videos = evaluation_plan.cycle_targets(len(descriptions), args.seed)
    return [descriptions[v] for v in target_videos], tokens[target_videos]
  targets = evaluation_plan.read_targets(args.targets, len(descriptions))
  rows = []
  for line, target in enumerate(targets):
    try:
      rows.append(tokenizer(target)[0])
    except UserError as error:
      raise UserError(f"--targets {args.targets} line {line + 1}: {error}") from None
  return targets, np.stack(rows)


def make_generate(nets, alpha):
  """-> jitted (params, frozen_vars, frames, wplus, times, source_tokens, target_tokens) ->
  (reconstruction, edit [batch, T, H, W, 3] float32 in about [-1, 1] at the data size, solve_ok bool).

  frames: [batch, T, H, W, 3] uint8 clips; wplus: [batch, T, n_latent, style_dim]; times: [T] from 0.
  """
  model = nets.model

  def generate(params, frozen_vars, frames, wplus, times, source_tokens, target_tokens):
    frames01 = frames.astype(jnp.float32) / 255.0
    content = inference.content_code(nets.config, wplus)
    style, _ = inference.style_token(nets, frozen_vars, content)
    mask = jnp.ones(frames.shape[:2], jnp.float32)
    z0 = model.apply(params, inference.dynamics_input(nets, frames01), times, mask, method=model.encode)
    z_t, stats = model.apply(params, z0, times, method=model.solve)
    direction = inference.text_direction(nets, frozen_vars, source_tokens, target_tokens, alpha)
    render = lambda s: inference.render_frames(
        nets, frozen_vars, model.apply(params, z_t, content, s, method=model.latents))[1]
    return render(style), render(style + direction), stats["solve_ok"]

  return jax.jit(generate)


def make_clip_embeddings(nets):
  """-> jitted (frozen_vars, clips [batch, T, H, W, 3] uint8) -> CLIP image embeddings [batch, T, embed]."""

  def embed(frozen_vars, clips):
    flat = video_io.to_m11(clips.reshape((-1,) + clips.shape[2:]))
    return nets.frozen.clip_image(frozen_vars, flat).reshape(clips.shape[:2] + (-1,))

  return jax.jit(embed)


def _frames01(frames):
  """[..., H, W, 3] uint8 -> [n, H, W, 3] float32 in [0, 1]."""
  return jnp.asarray(frames.reshape((-1,) + frames.shape[-3:]), jnp.float32) / 255.0


class Timer:
  """Seconds per stage, in total and after the first batch (which compiles)."""

  def __init__(self):
    self.total, self.first = {}, {}

  def __call__(self, stage, fn, *args):
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*args))
    self.total[stage] = self.total.get(stage, 0.0) + time.perf_counter() - start
    return result

  def end_of_first_batch(self):
    self.first = dict(self.total)

  def report(self, num_batches, batch_size):
    """One line: seconds per video and stage, after the first batch if there are more."""
    steady = num_batches > 1
    videos = batch_size * (num_batches - 1 if steady else 1)
    per_video = {stage: (seconds - self.first[stage] if steady else seconds) / videos
                 for stage, seconds in self.total.items()}
    when = "after the first batch" if steady else "first batch, compilation included"
    return (f"seconds per video ({when}, batches of {batch_size}): "
            + ", ".join(f"{stage} {seconds:.3g}" for stage, seconds in per_video.items()))


def compute_outputs(run, videos, clips, source_tokens, target_tokens, alpha, metrics, networks, args):
  """Runs the model and the metric networks over every clip, in batches of videos sharing their clip times.

  Returns ({set: {name: [videos, ...] numpy array}}, Timer, number of batches). The sets are real, reconstruction
  and edit; the names are among i3d, pool3, logits (per video), warp (per video), clip (CLIP image embeddings per
  frame), psnr and ssim (per frame).
  """
  config = run.config
  generate = make_generate(run.nets, alpha)
  clip_embeddings = make_clip_embeddings(run.nets) if "clip_acc" in metrics else None
  i3d_features = metric_networks.i3d_features(networks["fvd"]) if "fvd" in metrics else None
  pool3 = metric_networks.inception_outputs(networks["fid"]) if "fid" in metrics else None
  logits = metric_networks.inception_outputs(networks["is"]) if "is" in metrics else None
  flows = metric_networks.raft_flows(networks["warp"], args.raft_updates) if "warp" in metrics else None

  times = clips.times(config.data.video_length)
  groups = {}
  for video, row in enumerate(times):
    groups.setdefault(row.tobytes(), []).append(video)
  batches = [ids[i:i + args.batch_size] for ids in groups.values() for i in range(0, len(ids), args.batch_size)]
  outputs = {name: {} for name in SETS}
  timer = Timer()

  def store(name, key, ids, values):
    values = np.asarray(values)[:len(ids)]
    target = outputs[name].setdefault(key, np.zeros((len(clips.frame_numbers),) + values.shape[1:], values.dtype))
    target[ids] = values

  for number, ids in enumerate(tqdm.tqdm(batches, desc="evaluating", unit="batch", disable=args.no_progress)):
    padded = ids + [ids[-1]] * (args.batch_size - len(ids))
    read = lambda: [videos.clip(v, clips.frame_numbers[v]) for v in padded]
    read_clips = timer("read", read)
    real = np.stack([frames for frames, _ in read_clips])
    wplus = np.stack([w for _, w in read_clips])
    rec, edit, solve_ok = timer("generate", generate, run.params, run.frozen_vars, real, wplus, times[ids[0]],
                                source_tokens[padded], target_tokens[padded])
    if not bool(solve_ok):
      raise UserError(f"the latent ODE solve of a clip needed more than dynamics.max_steps="
                      f"{config.dynamics.max_steps} steps: raise it with --ode_max_steps")
    sets = {"real": real, "reconstruction": video_io.to_uint8(np.asarray(rec)),
            "edit": video_io.to_uint8(np.asarray(edit))}
    if i3d_features is not None:
      features = timer("fvd", i3d_features, np.concatenate([sets[name] for name in SETS]))
      for name, part in zip(SETS, np.split(np.asarray(features), len(SETS))):
        store(name, "i3d", ids, part)
    frames = np.concatenate([sets[name][np.arange(len(padded)), clips.fid_frames[padded]] for name in SETS])
    for metric, key, fn in (("fid", "pool3", pool3), ("is", "logits", logits)):
      if fn is not None:
        result = timer(metric, fn, frames)[key]
        for name, part in zip(SETS, np.split(np.asarray(result), len(SETS))):
          store(name, key, ids, part)
    if flows is not None:
      forward, backward = timer("warp", flows, real)
      for name in SETS:
        store(name, "warp", ids, timer("warp", warping.warping_error, sets[name] / np.float32(255), forward,
                                       backward))
    if clip_embeddings is not None:
      for name in GENERATED:
        store(name, "clip", ids, timer("clip_acc", clip_embeddings, run.frozen_vars, sets[name]))
    if "rec" in metrics:
      shape = (len(padded), len(times[0]))
      for key, fn in (("psnr", reconstruction.psnr), ("ssim", reconstruction.ssim)):
        values = timer("rec", fn, _frames01(sets["reconstruction"]), _frames01(real))
        store("reconstruction", key, ids, np.asarray(values).reshape(shape))
    if number == 0:
      timer.end_of_first_batch()
  return outputs, timer, len(batches)


def summarise(outputs, metrics, clip_text, is_splits, same_text):
  """{set: {metric: value}} from the per-video outputs; clip_text: (target, source) embeddings [videos, embed]."""
  results = {name: {} for name in SETS}
  real = outputs["real"]
  for name in GENERATED:
    generated, result = outputs[name], results[name]
    if "fvd" in metrics:
      result["fvd"] = frechet.frechet_distance_of_features(real["i3d"], generated["i3d"])
    if "fid" in metrics:
      result["fid"] = frechet.frechet_distance_of_features(real["pool3"], generated["pool3"])
    if "clip_acc" in metrics:
      kept = ~same_text
      scores = clip_accuracy.manipulation_accuracy(generated["clip"][kept], clip_text[0][kept], clip_text[1][kept])
      result["clip_accuracy"] = float(scores["accuracy"])
      result["clip_target_similarity"] = float(np.mean(scores["target_similarity"]))
      result["clip_source_similarity"] = float(np.mean(scores["source_similarity"]))
  for name in SETS:
    if "is" in metrics:
      mean, std = inception_score.inception_score(outputs[name]["logits"], is_splits)
      results[name]["is"] = {"mean": mean, "std": std}
    if "warp" in metrics:
      results[name]["warping_error"] = float(np.mean(outputs[name]["warp"]))
  if "rec" in metrics:
    for key in ("psnr", "ssim"):
      results["reconstruction"][key] = float(np.mean(outputs["reconstruction"][key]))
  return {name: result for name, result in results.items() if result}


def protocol(args, run, clips, alpha, networks, where, num_in_split, metrics, same_text):
  """Every choice behind the numbers (docs/metrics_protocol.md)."""
  d = run.config.data
  rates = sorted(set(clips.source_fps.tolist()))
  result = {
      "run": {"workdir": args.workdir, "step": run.step},
      "held_out": {"videos": where, "evaluated": len(clips.frame_numbers), "of": num_in_split,
                   "which": "the first videos of the split, in its order"},
      "seed": args.seed,
      "clip": {
          "frames": args.clip_frames, "fps": args.clip_fps or None,
          "source_fps": [rate or None for rate in rates],
          "frame_numbers": "start + floor(k * source_fps / fps + 0.5); consecutive where fps or source_fps is "
                           "unknown (null)",
          "start": "uniform among the starts at which every clip frame exists, numpy default_rng((seed, 0, video))",
          "model_times": "(frame number - start) / data.video_length, every clip frame encoded and decoded",
          "content": f"model.content={run.config.model.content!r} of the clip frames' W+ inversions",
      },
      "frames": {
          "size": [d.height, d.width],
          "generated": "rendered by the generator, resized to the data size (PyTorch bicubic), rounded to uint8 "
                       "(video_io.to_uint8) as a saved video holds them; real frames are the stored uint8 frames",
          "value_range": "uint8 -> [-1, 1] for I3D, Inception, RAFT and CLIP; [0, 1] for PSNR, SSIM and the "
                         "warping error",
      },
      "edit": {
          "targets": (f"the lines of {args.targets}" if args.targets else
                      "the description of the next video in a random cycle, numpy default_rng((seed, 2))"),
          "alpha": alpha,
          "direction": "alpha * (CLIP_text(target) - CLIP_text(description)) added to the style token",
      },
  }
  if "fvd" in networks:
    result["fvd"] = {"network": networks["fvd"].protocol(), "features": "400 logits averaged over time",
                     "resize": "every frame to 224x224, TF1 bilinear", "clips": "one per video"}
  if "fid" in networks:
    result["fid"] = {"network": networks["fid"].protocol(), "features": "pool3 (2048)",
                     "resize": "299x299, TF1 bilinear", "frame": "one per video, clip frame drawn by numpy "
                     "default_rng((seed, 1, video)), the same for real and generated"}
  if "is" in networks:
    result["is"] = {"network": networks["is"].protocol(), "splits": args.is_splits,
                    "logits": "1008, without the output bias", "frame": "the FID frame"}
  if "warp" in networks:
    raft_fields = networks["warp"].architecture["fields"]
    result["warp"] = {"network": networks["warp"].protocol(), "flow_updates": args.raft_updates,
                      "flows": "RAFT forward and backward flows between consecutive frames of the real clip (Lai et "
                               "al. 2018: flows of the input video), applied to the real, reconstructed and edited "
                               "frames",
                      "flow_size": list(metric_networks.raft_size(d.height, d.width, raft_fields["variant"])),
                      "flow_resize": "bilinear, align corners, to the flow size and back (vectors scaled)"}
  if "clip_acc" in metrics:
    result["clip_acc"] = {
        "model": (run.config.clip.checkpoint or "the run's CLIP, drawn at random from the seed (demo)"),
        "variables_sha256": (metric_networks.variables_sha256(run.config.clip.checkpoint)
                             if run.config.clip.checkpoint else None),
        "prompts": "the target texts and the videos' own descriptions, as they are (no template)",
        "decision": "correct when the mean cosine similarity of the clip's frames is higher to the target",
        "excluded": int(np.sum(same_text)),
        "excluded_why": "videos whose target is their own description",
    }
  return result


def evaluate(args):
  """Runs the evaluation; returns (the JSON document, the output path, a line of timings)."""
  check_flags(args)
  metrics, skipped = choose_metrics(args)
  run = trained_run.load(args.workdir, args.config, args.ode_max_steps)
  videos, tokens, tokenizer, label, where = held_out_videos(run, args.split)
  num_videos = len(videos) if args.num_videos is None else args.num_videos
  if num_videos > len(videos):
    raise UserError(f"--num_videos={num_videos}: {where} holds only {len(videos)} videos")
  metrics, too_few = check_runnable(metrics, count_problems(metrics, num_videos, args.is_splits,
                                                            args.targets is not None), args.metrics is not None)
  skipped.update(too_few)
  networks = {metric: metric_networks.load(NETWORKS[metric], getattr(args, NETWORKS[metric]))
              for metric in metrics if metric in NETWORKS}
  clips = evaluation_plan.plan_clips(videos, num_videos, args.clip_frames, args.clip_fps, args.source_fps, args.seed)
  if args.clip_fps and not np.all(clips.source_fps):
    print(f"note: {int(np.sum(clips.source_fps == 0))} videos have no frame rate (frame folders, the demo's rendered "
          "videos): their clips take consecutive frames; --source_fps sets one")
  descriptions = list(videos.descriptions[:num_videos])
  source_tokens = tokens[:num_videos]
  targets, target_tokens = edit_targets(args, descriptions, source_tokens, tokenizer)
  same_text = np.array([target == description for target, description in zip(targets, descriptions)])
  if "clip_acc" in metrics and same_text.all():
    raise UserError("every edit target equals its video's own description: no edit to classify (give --targets)")
  alpha = run.config.loss.manipulation_strength if args.alpha is None else args.alpha
  outputs, timer, num_batches = compute_outputs(run, videos, clips, source_tokens, target_tokens, alpha, metrics,
                                                networks, args)
  clip_text = None
  if "clip_acc" in metrics:
    embed_text = jax.jit(run.nets.frozen.clip_text)
    clip_text = tuple(np.asarray(embed_text(run.frozen_vars, t)) for t in (target_tokens, source_tokens))
  document = {
      "metrics": summarise(outputs, metrics, clip_text, args.is_splits, same_text),
      "skipped": skipped,
      "counts": {"videos": num_videos, "frames_per_video": args.clip_frames, "frames": num_videos * args.clip_frames},
      "protocol": protocol(args, run, clips, alpha, networks, where, len(videos), metrics, same_text),
      "videos": [{"name": videos.names[v], "description": descriptions[v], "target": targets[v],
                  "frame_numbers": clips.frame_numbers[v].tolist(), "fid_frame": int(clips.fid_frames[v])}
                 for v in range(num_videos)],
  }
  out = args.out or os.path.join(args.workdir, files.EVALUATION_FILE.format(held_out=label))
  return document, out, timer.report(num_batches, args.batch_size)


def write_document(document, out):
  """Writes the JSON document of `evaluate` to out, atomically."""
  files.write_text(out, json.dumps(document, indent=2) + "\n")


@errors.exits_on_user_error("evaluate")
def main(argv=None):
  """Runs the command; returns the exit status (1 with a one-line message for a user error)."""
  host_memory.keep_freed_memory()
  args = build_parser().parse_args(argv)
  document, out, timings = evaluate(args)
  write_document(document, out)
  show = lambda value: f"{value['mean']:.4g} ± {value['std']:.2g}" if isinstance(value, dict) else f"{value:.4g}"
  for name, values in document["metrics"].items():
    print(f"{name}: " + ", ".join(f"{key} {show(value)}" for key, value in values.items()))
  for metric, why in document["skipped"].items():
    print(f"skipped {metric}: {why}")
  print(timings)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
