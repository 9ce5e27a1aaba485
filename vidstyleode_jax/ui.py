r"""A local web page for the applications of a trained run (needs the `ui` extra: pip install -e ".[ui]").

  python -m vidstyleode_jax.ui --workdir=RUN [--port=7860] [--psp=DIR] [--cache=DIR]

One tab per application of `python -m vidstyleode_jax.apps`, taking the same inputs and calling the same
apps/session.Session methods, so the page and the command line give the same frames for the same inputs. The run is
loaded once, at start (apps/trained_run.load); each model program is compiled by the first request that needs it.
A result is written as `apps SUBCOMMAND --output SUBCOMMAND.mp4 --side-by-side --save-frames SUBCOMMAND.npy` writes
it, into a new folder under CACHE/outputs/ (CACHE defaults to WORKDIR/ui); the page shows the side-by-side video
(inputs | output) and offers the mp4 and the raw frames for download. For a demo run (WORKDIR/demo_data/eval.npz)
the page offers held-out demo videos with their exact inversions as examples, exported by apps/export_demo into
CACHE/examples/ on the first start. A bad input is shown in the page with the message the command line would print
(a UserError), and the server keeps running. One request runs at a time; the others wait in a queue.
"""

import argparse
import html
import os
import sys
import tempfile

import gradio as gr
import numpy as np

from vidstyleode_jax import errors
from vidstyleode_jax import files
from vidstyleode_jax import host_memory
from vidstyleode_jax import video_io
from vidstyleode_jax.apps import export_demo
from vidstyleode_jax.apps import outputs
from vidstyleode_jax.apps import regions
from vidstyleode_jax.apps import session as session_lib
from vidstyleode_jax.apps import trained_run
from vidstyleode_jax.errors import UserError

EXAMPLES = 4  # held-out demo videos offered as examples
EXAMPLE_FPS = 8.0  # their frame rate
PREVIEW_PX = 256  # the first frame of the motion-transfer tab is enlarged by an integer factor to about this size
STARTING = "Reading the inputs (the first request of each application also compiles its model programs)"
OUTSIDE_REGION_SHADE = 3  # pixels outside the region are shown this many times darker
INPUT_HEIGHT_PX = 240
CSS = "video { image-rendering: pixelated; }"  # small videos enlarged without blur


def _given(path, what):
  if not path:
    raise UserError(f"No {what}: upload one or pick an example below")
  return path


class Handlers:
  """What the page's buttons run. Each returns (the side-by-side video, [the output mp4, the raw frames .npy])."""

  def __init__(self, session, outputs_dir):
    self.session, self.outputs_dir = session, outputs_dir

  def _respond(self, command, progress, compute):
    """Runs compute() -> applications.Result and writes it as `apps COMMAND` would, in a new folder."""
    progress(0, desc=STARTING)
    try:
      result = compute()
      try:
        folder = tempfile.mkdtemp(prefix=f"{command}_", dir=self.outputs_dir)
      except OSError as error:
        raise files.write_failure(error, self.outputs_dir) from None
      path, frames_path = os.path.join(folder, f"{command}.mp4"), os.path.join(folder, f"{command}.npy")
      outputs.write_result(result, path, command, side_by_side=True, frames_path=frames_path)
    except UserError as error:
      raise gr.Error(html.escape(errors.one_line(error)), duration=None, print_exception=False) from None
    return outputs.compare_path(path), [path, frames_path]

  def edit(self, video, inversions, source, target, alpha, progress=gr.Progress(track_tqdm=True)):
    return self._respond("edit", progress, lambda: self.session.edit(
        _given(video, "video"), inversions, source, target, alpha))

  def animate(self, image, inversions, driving, progress=gr.Progress(track_tqdm=True)):
    return self._respond("animate", progress, lambda: self.session.animate(
        _given(image, "image"), inversions, _given(driving, "driving video")))

  def interpolate(self, video, inversions, fps, keep_every, progress=gr.Progress(track_tqdm=True)):
    return self._respond("interpolate", progress, lambda: self.session.interpolate(
        _given(video, "video"), inversions, fps=fps, keep_every=None if keep_every is None else int(keep_every)))

  def extrapolate(self, video, inversions, seconds, progress=gr.Progress(track_tqdm=True)):
    return self._respond("extrapolate", progress, lambda: self.session.extrapolate(
        _given(video, "video"), inversions, seconds))

  def transfer_motion(self, video, inversions, driving, region, progress=gr.Progress(track_tqdm=True)):
    return self._respond("transfer-motion", progress, lambda: self.session.transfer_motion(
        _given(video, "video"), inversions, _given(driving, "driving video"), region=region))

  def blend_motion(self, video, inversions, video_b, weight, progress=gr.Progress(track_tqdm=True)):
    return self._respond("blend-motion", progress, lambda: self.session.blend_motion(
        _given(video, "video"), inversions, _given(video_b, "video B"), weight))


def first_frame(video):
  """The first frame of the video file `video` as read ([H, W, 3] uint8), or None (running reports why)."""
  if not video:
    return None
  try:
    return video_io.read_video(video)[0][0]
  except OSError:
    return None


def _scale(frame):
  return max(1, PREVIEW_PX // max(frame.shape[:2]))


def region_preview(frame, region):
  """The frame enlarged by _scale, darker outside the region 'x0,y0,x1,y1' (all bright while it is not valid)."""
  if frame is None:
    return None
  try:
    inside = regions.parse_box(region, *frame.shape[:2])
  except UserError:
    inside = np.ones(frame.shape[:2], bool)
  shown = np.where(inside[..., None], frame, frame // OUTSIDE_REGION_SHADE)
  scale = _scale(frame)
  return np.repeat(np.repeat(shown, scale, axis=0), scale, axis=1)


def region_click(frame, corner, event: gr.SelectData):
  """A click on the preview -> (region, corner): a first click selects its pixel and is remembered as a corner, a
  second selects the box spanning both corners."""
  scale = _scale(frame)
  x, y = event.index[0] // scale, event.index[1] // scale
  if corner is None:
    return f"{x},{y},{x + 1},{y + 1}", (x, y)
  x0, y0 = corner
  return f"{min(x, x0)},{min(y, y0)},{max(x, x0) + 1},{max(y, y0) + 1}", None


def demo_examples(workdir, folder):
  """For a demo run, its first held-out videos exported into `folder` by export_demo (at the first start, kept for
  the next): a list of export_demo.paths dicts with the description as 'text' and the left half of the frame as
  'left_half' (a region). [] for runs on real data."""
  if not os.path.isfile(export_demo.source(workdir)):
    return []
  videos = export_demo.held_out(workdir)
  count = min(EXAMPLES, len(videos))
  if not os.path.isdir(folder):
    with files.atomic_folder(folder, exist_ok=True) as partial:
      export_demo.export(workdir, partial, count, EXAMPLE_FPS, progress=False)
  height, width = videos.frames.shape[2:4]
  examples = [export_demo.paths(folder, k) for k in range(count)]
  for example in examples:
    with open(example["description"], encoding="utf-8") as f:
      example.update(text=f.read().strip(), left_half=f"0,0,{width // 2},{height}")
  return examples


def _video(label, elem_id):
  return gr.Video(label=label, sources=["upload"], include_audio=True, height=INPUT_HEIGHT_PX, elem_id=elem_id)


def _inversions(label, elem_id):
  return gr.File(label=label, file_types=[".npy"], elem_id=elem_id)


def _tab(name, title, handler, inputs, examples, rows):
  """Wires the tab's run button and outputs (the side-by-side video beside the inputs, the download links) and its
  example rows; `inputs` builds the input components inside the input column and returns them."""
  with gr.Row():
    with gr.Column():
      components = inputs()
      button = gr.Button(title, variant="primary", elem_id=f"{name}-run")
    with gr.Column():
      shown = gr.Video(label="inputs | output", interactive=False, autoplay=True, loop=True, elem_id=f"{name}-output")
      downloads = gr.File(label="Download: the output mp4 and its raw frames (.npy, [frames, H, W, 3] float32)",
                          file_count="multiple", interactive=False, elem_id=f"{name}-files")
  button.click(handler, components, [shown, downloads], concurrency_limit=1, concurrency_id="model")
  if examples:
    gr.Examples([rows(k, examples) for k in range(len(examples))], components[:len(rows(0, examples))],
                label="Held-out demo videos with their exact inversions", elem_id=f"{name}-examples")
  return components


INVERSIONS = "Its W+ inversions, .npy (--inversions; leave empty with --psp)"


def build(handlers, examples, header):
  """The page: a header (markdown) and one tab per application. examples: demo_examples(...) ([] for none)."""
  strength = handlers.session.run.config.loss.manipulation_strength
  other = lambda k, e: e[(k + 1) % len(e)]
  with gr.Blocks(title="VidStyleODE", analytics_enabled=False) as page:
    gr.Markdown(header)
    with gr.Tab("Edit", elem_id="edit-tab"):
      _tab("edit", "Edit", handlers.edit, lambda: [
          _video("Video (--video)", "edit-video"), _inversions(INVERSIONS, "edit-inversions"),
          gr.Textbox(label="Source: the video's description (--source)", elem_id="edit-source"),
          gr.Textbox(label="Target: the wanted appearance (--target)", elem_id="edit-target"),
          gr.Slider(0, 2 * strength, value=strength, step=0.1, label="Strength alpha (--alpha; 0 reconstructs)",
                    elem_id="edit-alpha"),
      ], examples, lambda k, e: [e[k]["video"], e[k]["inversions"], e[k]["text"], e[k]["text"]])
    with gr.Tab("Animate", elem_id="animate-tab"):
      _tab("animate", "Animate", handlers.animate, lambda: [
          gr.Image(label="Image (--image)", type="filepath", image_mode=None, sources=["upload"], format="png",
                   elem_id="animate-image"),
          _inversions("Its W+ inversion, .npy (--inversions; leave empty with --psp)", "animate-inversions"),
          _video("Driving video: the motion (--driving)", "animate-driving"),
      ], examples, lambda k, e: [e[k]["image"], e[k]["image_inversions"], other(k, e)["video"]])
    with gr.Tab("Interpolate", elem_id="interpolate-tab"):
      _tab("interpolate", "Interpolate", handlers.interpolate, lambda: [
          _video("Video (--video)", "interpolate-video"), _inversions(INVERSIONS, "interpolate-inversions"),
          gr.Number(label="Output frame rate (--fps; empty: the input's)", elem_id="interpolate-fps"),
          gr.Number(label="Show the encoder every K-th frame (--keep-every)", value=1, precision=0, minimum=1,
                    elem_id="interpolate-keep"),
      ], examples, lambda k, e: [e[k]["video"], e[k]["inversions"], 2 * EXAMPLE_FPS, 2])
    with gr.Tab("Extrapolate", elem_id="extrapolate-tab"):
      _tab("extrapolate", "Extrapolate", handlers.extrapolate, lambda: [
          _video("Video (--video)", "extrapolate-video"), _inversions(INVERSIONS, "extrapolate-inversions"),
          gr.Number(label="Seconds to continue (--seconds)", value=1.0, elem_id="extrapolate-seconds"),
      ], examples, lambda k, e: [e[k]["video"], e[k]["inversions"], 1.0])
    with gr.Tab("Transfer motion", elem_id="transfer-tab"):
      frame, corner = gr.State(None), gr.State(None)

      def transfer_inputs():
        video = _video("Video (--video)", "transfer-video")
        inversions = _inversions(INVERSIONS, "transfer-inversions")
        driving = _video("Driving video: the motion inside the region (--driving)", "transfer-driving")
        region = gr.Textbox(label="Region x0,y0,x1,y1 in pixels, x1 and y1 exclusive (--region); or click two "
                            "corners on the first frame below", elem_id="transfer-region")
        preview = gr.Image(label="First frame (darker outside the region)", interactive=False, format="png",
                           elem_id="transfer-preview")
        video.change(first_frame, video, frame).then(region_preview, [frame, region], preview)
        region.change(region_preview, [frame, region], preview)
        preview.select(region_click, [frame, corner], [region, corner])
        return [video, inversions, driving, region]

      _tab("transfer", "Transfer motion", handlers.transfer_motion, transfer_inputs, examples,
           lambda k, e: [e[k]["video"], e[k]["inversions"], other(k, e)["video"], e[k]["left_half"]])
    with gr.Tab("Blend motion", elem_id="blend-tab"):
      _tab("blend", "Blend motion", handlers.blend_motion, lambda: [
          _video("Video: content and motion A (--video)", "blend-video"), _inversions(INVERSIONS, "blend-inversions"),
          _video("Video B: motion B (--video-b)", "blend-video-b"),
          gr.Slider(0, 1, value=0.5, step=0.05, label="Lambda: 0 gives A's motion, 1 B's (--lambda)",
                    elem_id="blend-lambda"),
      ], examples, lambda k, e: [e[k]["video"], e[k]["inversions"], other(k, e)["video"], 0.5])
  return page


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m vidstyleode_jax.ui", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="Training run folder: config.json and checkpoints/ (latest "
                      "step is restored).")
  parser.add_argument("--port", type=int, default=7860, help="Port on 127.0.0.1 to serve the page on.")
  parser.add_argument("--psp", metavar="DIR", help="A ported pSp folder to invert input frames with when no "
                      "inversions file is given.")
  parser.add_argument("--cache", metavar="DIR", help="Folder for the example inputs and the results (default: "
                      f"WORKDIR/{files.UI_DIR}).")
  return parser


@errors.exits_on_user_error("ui")
def main(argv=None):
  """Serves the page until interrupted; returns the exit status (1 with a one-line message for a user error)."""
  host_memory.keep_freed_memory()
  args = build_parser().parse_args(argv)
  run = trained_run.load(args.workdir)
  session = session_lib.Session(run, args.psp, progress=False)
  cache = args.cache or os.path.join(args.workdir, files.UI_DIR)
  outputs_dir = os.path.join(cache, "outputs")
  try:
    os.makedirs(outputs_dir, exist_ok=True)
  except OSError as error:
    raise files.write_failure(error, outputs_dir) from None
  examples = demo_examples(args.workdir, os.path.abspath(os.path.join(cache, "examples")))
  inverted_by = f"pSp `{args.psp}` or .npy files" if args.psp else ".npy files"
  header = (f"## VidStyleODE on `{args.workdir}`\nW+ inversions from {inverted_by}. Results are also kept in "
            f"`{outputs_dir}`. The first request of each application compiles its model (slower).")
  page = build(Handlers(session, os.path.abspath(outputs_dir)), examples, header)
  page.queue(default_concurrency_limit=1)
  page.launch(server_name="127.0.0.1", server_port=args.port, allowed_paths=[os.path.abspath(cache)],
              show_error=True, ssr_mode=False, css=CSS)
  return 0


if __name__ == "__main__":
  sys.exit(main())
