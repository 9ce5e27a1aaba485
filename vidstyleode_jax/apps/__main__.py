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
from vidstyleode_jax import host_memory
from vidstyleode_jax.apps import export_demo
from vidstyleode_jax.apps import inputs
from vidstyleode_jax.apps import outputs
from vidstyleode_jax.apps import renderer as renderer_lib
from vidstyleode_jax.apps import session as session_lib
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


HANDLERS = {
    "edit": lambda session, a: session.edit(a.video, a.inversions, a.source, a.target, a.alpha),
    "animate": lambda session, a: session.animate(a.image, a.inversions, a.driving),
    "interpolate": lambda session, a: session.interpolate(a.video, a.inversions, a.fps, a.times, a.frames, a.drop,
                                                          a.keep_every, a.seed),
    "extrapolate": lambda session, a: session.extrapolate(a.video, a.inversions, a.seconds),
    "transfer-motion": lambda session, a: session.transfer_motion(a.video, a.inversions, a.driving, a.region,
                                                                  a.mask),
    "blend-motion": lambda session, a: session.blend_motion(a.video, a.inversions, a.video_b, a.weight),
}


PATH_FLAGS = ("video", "driving", "video_b", "image", "inversions", "mask", "psp", "config")


def _check_before_loading(args):
  """Fails fast, before the model is loaded, on a missing input path, an unwritable output or an empty text."""
  for name in PATH_FLAGS:
    path = getattr(args, name, None)
    if path is not None and not os.path.exists(path):
      raise UserError(f"--{name.replace('_', '-')} {path}: file not found")
  if args.command == "edit":
    session_lib.check_description(args.source, "--source")
    session_lib.check_description(args.target, "--target")
  outputs.check_output_path(args.output)


def _run_application(args):
  _check_before_loading(args)
  if args.save_frames is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.save_frames))):
    raise UserError(f"--save-frames {args.save_frames}: its folder does not exist")
  run = trained_run.load(args.workdir, args.config, args.ode_max_steps)
  session = session_lib.Session(run, args.psp, args.batch_frames, args.resolution, args.max_frames, args.input_fps,
                                progress=not args.no_progress)
  result = HANDLERS[args.command](session, args)
  return outputs.write_result(result, args.output, args.command, args.side_by_side, args.save_frames)


@errors.exits_on_user_error("apps")
def main(argv=None):
  """Runs one subcommand; returns the exit status (1 with a one-line message for a user error)."""
  host_memory.keep_freed_memory()
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
