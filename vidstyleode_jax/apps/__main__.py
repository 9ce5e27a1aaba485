r"""VidStyleODE applications on video files, with a trained run.

  python -m vidstyleode_jax.apps edit --workdir RUN --video in.mp4 --inversions in.npy \
      --source "a reddish figure" --target "a bluish figure" --output out.mp4
  python -m vidstyleode_jax.apps SUBCOMMAND --help

Time: frame k of an input video is at model time k / config.data.video_length (the first frame is time 0), as in
training. Flags in seconds (--times, --seconds) are converted through the input video's frame rate; --frames takes
input frame numbers (fractions allowed).
"""

import argparse
import os
import sys

from vidstyleode_jax import errors
from vidstyleode_jax.apps import applications
from vidstyleode_jax.apps import export_demo
from vidstyleode_jax.apps import inputs
from vidstyleode_jax.apps import outputs
from vidstyleode_jax.apps import regions
from vidstyleode_jax.apps import renderer as renderer_lib
from vidstyleode_jax.apps import timeline
from vidstyleode_jax.apps import trained_run
from vidstyleode_jax.errors import UserError


TIME_NOTE = ("Time: input frame k is at model time k / config.data.video_length (the first frame is time 0); seconds "
             "are converted through the input video's frame rate.")


def _common_flags():
  parser = argparse.ArgumentParser(add_help=False)
  group = parser.add_argument_group("common flags")
  group.add_argument("--workdir", required=True, help="Training run folder: config.json and checkpoints/ (latest "
                     "step is restored).")
  group.add_argument("--config", help="configs/*.py or a config.json, for runs without WORKDIR/config.json.")
  group.add_argument("--output", required=True, help="Output video, .mp4 or .gif.")
  group.add_argument("--side-by-side", action="store_true", help="Also write OUT_compare.mp4: inputs | output.")
  group.add_argument("--save-frames", metavar="FILE.npy", help="Also save the output frames, [frames, H, W, 3] "
                     "float32 in [-1, 1] (lossless).")
  group.add_argument("--psp", metavar="DIR", help="A ported pSp folder (python -m port_weights psp ...) to invert "
                     "input frames with, instead of --inversions files.")
  group.add_argument("--seed", type=int, default=0, help="Seed of everything random (the frames hidden by --drop).")
  group.add_argument("--batch-frames", type=int, default=4, help="Frames rendered per generator call (bounds memory).")
  group.add_argument("--max-frames", type=int, help="Use at most this many frames of each input video (from its "
                     "start).")
  group.add_argument("--input-fps", type=float, help="Frame rate of the input videos (default: as the file reports; "
                     f"{inputs.FOLDER_FPS:g} for frame folders).")
  group.add_argument("--resolution", choices=renderer_lib.RESOLUTIONS, default="generator", help="Output size: the "
                     "generator's, or config.data height x width (the training size).")
  group.add_argument("--ode-max-steps", type=int, help="Override config.dynamics.max_steps (long extrapolations).")
  group.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
  return parser


def _video_flags(parser, inversions_help="Its W+ inversions: [frames, n_latent, style_dim] .npy, one per frame."):
  parser.add_argument("--video", required=True, help="Input video: .mp4/.mov/.webm, or a folder of numbered frames.")
  parser.add_argument("--inversions", metavar="FILE.npy", help=inversions_help)


def build_parser():
  common = _common_flags()
  parser = argparse.ArgumentParser(prog="python -m vidstyleode_jax.apps", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

  p = commands.add_parser("edit", parents=[common], help="Text-guided appearance change; the motion is kept.")
  _video_flags(p)
  p.add_argument("--source", required=True, help="Text describing the input, e.g. 'a reddish figure'.")
  p.add_argument("--target", required=True, help="Text describing the wanted appearance.")
  p.add_argument("--alpha", type=float, help="Edit strength: direction = alpha * (CLIP(target) - CLIP(source)); "
                 "default: the run's loss.manipulation_strength. 0 reproduces the input.")

  p = commands.add_parser("animate", parents=[common], help="Animate a still image with a driving video's motion.")
  p.add_argument("--image", required=True, help="Still image (png/jpg): the content.")
  p.add_argument("--inversions", metavar="FILE.npy", help="The image's W+ inversion, [1, n_latent, style_dim].")
  p.add_argument("--driving", required=True, help="Driving video (file or frame folder): the motion and timing.")

  p = commands.add_parser("interpolate", parents=[common], help="Render at any frame rate or times; optionally hide "
                          "input frames from the encoder to see them filled in.", description=TIME_NOTE)
  _video_flags(p)
  when = p.add_mutually_exclusive_group()
  when.add_argument("--fps", type=float, help="Output frame rate over the input's first to last frame (default: "
                    "the input's).")
  when.add_argument("--times", help="Comma-separated times in seconds of the input video, increasing, e.g. "
                    "0,0.05,0.1 (the output plays at the input's fps).")
  when.add_argument("--frames", help="Comma-separated input frame numbers, fractions allowed, e.g. 0,0.5,1,1.5 (the "
                    "output plays at the input's fps).")
  hide = p.add_mutually_exclusive_group()
  hide.add_argument("--drop", type=int, help="Hide this many interior frames from the encoder (drawn with --seed).")
  hide.add_argument("--keep-every", type=int, help="Show the encoder only frames 0, K, 2K, ...")

  p = commands.add_parser("extrapolate", parents=[common], help="Continue the motion past the last input frame.",
                          description=TIME_NOTE)
  _video_flags(p)
  p.add_argument("--seconds", type=float, required=True, help="How long to continue, in seconds at the input fps.")

  p = commands.add_parser("transfer-motion", parents=[common], help="Local motion transfer: the driving video's "
                          "motion inside a region, the video's own outside it.")
  _video_flags(p)
  p.add_argument("--driving", required=True, help="Video whose motion is used inside the region.")
  region = p.add_mutually_exclusive_group(required=True)
  region.add_argument("--region", metavar="x0,y0,x1,y1", help="Pixel box in the input video's frames (x1, y1 "
                      "exclusive).")
  region.add_argument("--mask", metavar="MASK.png", help="Mask image, white inside (resized to the dynamics grid).")

  p = commands.add_parser("blend-motion", parents=[common], help="Blend two videos' motion: z0 = (1-L) z_A + L z_B.")
  _video_flags(p)
  p.add_argument("--video-b", required=True, help="Second video (motion only).")
  p.add_argument("--lambda", dest="weight", type=float, required=True, help="L: 0 gives the video's motion, 1 B's.")

  p = commands.add_parser("export-demo", help="Write held-out demo videos and their exact inversions to try the "
                          "applications on the demo model.")
  p.add_argument("--workdir", required=True, help="A demo training run (holds demo_data/eval.npz).")
  p.add_argument("--out", required=True, help="Folder to write demo_K.mp4, .npy, _frame0.png, _frame0.npy, .txt to.")
  p.add_argument("--count", type=int, default=4, help="How many videos.")
  p.add_argument("--fps", type=float, default=8.0, help="Frame rate of the written videos.")
  p.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
  return parser


def _edit(args, renderer, read_video, invert):
  video = read_video(args.video)
  wplus = invert(video, args.inversions, "--inversions")
  tokenizer = renderer.run.tokenizer()
  try:
    source, target = tokenizer(args.source), tokenizer(args.target)
  except ValueError as err:
    raise UserError(f"--source/--target: {err}") from None
  alpha = renderer.run.config.loss.manipulation_strength if args.alpha is None else args.alpha
  return applications.edit(renderer, video, wplus, source, target, alpha)


def _animate(args, renderer, read_video, invert):
  image = inputs.read_image(args.image, renderer.run.frame_format)
  image_wplus = invert(image, args.inversions, "--inversions")
  return applications.animate(renderer, image, image_wplus, read_video(args.driving))


def _interpolate(args, renderer, read_video, invert):
  video = read_video(args.video)
  wplus = invert(video, args.inversions, "--inversions")
  if args.times is not None:
    positions, fps = timeline.positions_of_seconds(timeline.parse_numbers(args.times, "--times"), video.fps), video.fps
  elif args.frames is not None:
    positions, fps = timeline.parse_numbers(args.frames, "--frames"), video.fps
  else:
    fps = args.fps or video.fps
    positions = timeline.positions_at_fps(len(video), video.fps, fps)
  mask = applications.observation_mask(len(video), args.drop, args.keep_every, args.seed)
  return applications.interpolate(renderer, video, wplus, positions, fps, mask)


def _extrapolate(args, renderer, read_video, invert):
  video = read_video(args.video)
  return applications.extrapolate(renderer, video, invert(video, args.inversions, "--inversions"), args.seconds)


def _transfer_motion(args, renderer, read_video, invert):
  video = read_video(args.video)
  height, width = video.native_size
  region = regions.parse_box(args.region, height, width) if args.region else regions.read_mask(args.mask)
  region = regions.to_frame(region, renderer.run.frame_format)
  wplus = invert(video, args.inversions, "--inversions")
  return applications.transfer_motion(renderer, video, wplus, read_video(args.driving), region)


def _blend_motion(args, renderer, read_video, invert):
  video = read_video(args.video)
  wplus = invert(video, args.inversions, "--inversions")
  return applications.blend_motion(renderer, video, wplus, read_video(args.video_b), args.weight)


HANDLERS = {"edit": _edit, "animate": _animate, "interpolate": _interpolate, "extrapolate": _extrapolate,
            "transfer-motion": _transfer_motion, "blend-motion": _blend_motion}


PATH_FLAGS = ("video", "driving", "video_b", "image", "inversions", "mask", "psp", "config")


def _check_before_loading(args):
  """Fails fast, before the model is loaded, on a missing input path, an unwritable output or an empty text."""
  for name in PATH_FLAGS:
    path = getattr(args, name, None)
    if path is not None and not os.path.exists(path):
      raise UserError(f"--{name.replace('_', '-')} {path}: file not found")
  for name in ("source", "target"):
    if getattr(args, name, None) is not None and not getattr(args, name).strip():
      raise UserError(f"--{name} is empty: give a description of the {'input' if name == 'source' else 'wanted'} "
                      "appearance")
  outputs.check_output_path(args.output)


def _run_application(args):
  _check_before_loading(args)
  if args.save_frames is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.save_frames))):
    raise UserError(f"--save-frames {args.save_frames}: its folder does not exist")
  run = trained_run.load(args.workdir, args.config, args.ode_max_steps)
  renderer = renderer_lib.Renderer(run, args.batch_frames, args.resolution, progress=not args.no_progress)
  g = run.config.generator
  read_video = lambda path: inputs.read_video(path, run.frame_format, args.max_frames, args.input_fps)
  invert = inputs.Inversions(run.nets.frozen.generator.n_latent, g.style_dim, args.psp, args.max_frames)
  result = HANDLERS[args.command](args, renderer, read_video, invert)
  return outputs.write_result(result, args.output, args.command, args.side_by_side, args.save_frames)


@errors.exits_on_user_error("apps")
def main(argv=None):
  """Runs one subcommand; returns the exit status (1 with a one-line message for a user error)."""
  args = build_parser().parse_args(argv)
  if args.command == "export-demo":
    written = export_demo.export(args.workdir, args.out, args.count, args.fps, progress=not args.no_progress)
  else:
    written = _run_application(args)
  for path in written:
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
