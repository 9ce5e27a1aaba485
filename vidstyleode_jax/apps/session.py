"""A trained run loaded once, serving application requests: the command line's one, the web page's many.

A Session holds the run, its renderer and where W+ inversions come from (.npy files, or a ported pSp encoder), and
turns each application's inputs as a user gives them (file paths, texts, numbers) into an applications.Result.
`python -m vidstyleode_jax.apps` and `python -m vidstyleode_jax.ui` both call these methods, so a command and a
page given the same inputs run the same code. Error messages name the command-line flag of the faulty input.
"""

from vidstyleode_jax.apps import applications
from vidstyleode_jax.apps import inputs
from vidstyleode_jax.apps import regions
from vidstyleode_jax.apps import renderer as renderer_lib
from vidstyleode_jax.apps import timeline
from vidstyleode_jax.errors import UserError


def check_description(text, flag):
  """Raises UserError unless `text` (the value of --source or --target) has a non-space character."""
  if not text or not text.strip():
    wanted = "input" if flag == "--source" else "wanted"
    raise UserError(f"{flag} is empty: give a description of the {wanted} appearance")


class Session:
  """Binds a TrainedRun.

  psp: a ported pSp folder to invert frames with where no inversions file is given; batch_frames, resolution,
  progress: as renderer.Renderer takes them; max_frames: frames kept from the start of each video; input_fps:
  overrides the frame rate videos report.
  """

  def __init__(self, run, psp=None, batch_frames=4, resolution="generator", max_frames=None, input_fps=None,
               progress=True):
    self.run, self.max_frames, self.input_fps = run, max_frames, input_fps
    self.renderer = renderer_lib.Renderer(run, batch_frames, resolution, progress)
    self._invert = inputs.Inversions(run.nets.frozen.generator.n_latent, run.config.generator.style_dim, psp,
                                     max_frames)

  def read_video(self, path):
    return inputs.read_video(path, self.run.frame_format, self.max_frames, self.input_fps)

  def _video_and_codes(self, path, inversions):
    """The video at `path` and its W+ codes [frames, n_latent, style_dim]: from the .npy `inversions`, or pSp."""
    video = self.read_video(path)
    return video, self._invert(video, inversions, "--inversions")

  def edit(self, video, inversions, source, target, alpha=None):
    """alpha: edit strength; None is the run's loss.manipulation_strength."""
    check_description(source, "--source")
    check_description(target, "--target")
    video, wplus = self._video_and_codes(video, inversions)
    tokenizer = self.run.tokenizer()
    try:
      source_tokens, target_tokens = tokenizer(source), tokenizer(target)
    except ValueError as err:
      raise UserError(f"--source/--target: {err}") from None
    alpha = self.run.config.loss.manipulation_strength if alpha is None else alpha
    return applications.edit(self.renderer, video, wplus, source_tokens, target_tokens, alpha)

  def animate(self, image, inversions, driving):
    """image: a still image's path; inversions: its [1, n_latent, style_dim] .npy (or None: pSp)."""
    still = inputs.read_image(image, self.run.frame_format)
    image_wplus = self._invert(still, inversions, "--inversions")
    return applications.animate(self.renderer, still, image_wplus, self.read_video(driving))

  def interpolate(self, video, inversions, fps=None, times=None, frames=None, drop=None, keep_every=None, seed=0):
    """Output times: `times` (comma-separated seconds), `frames` (comma-separated input frame numbers) or every
    1 / fps seconds (fps None: the input's); drop / keep_every / seed: which frames the encoder sees."""
    video, wplus = self._video_and_codes(video, inversions)
    if times is not None:
      positions = timeline.positions_of_seconds(timeline.parse_numbers(times, "--times"), video.fps)
      fps = video.fps
    elif frames is not None:
      positions, fps = timeline.parse_numbers(frames, "--frames"), video.fps
    else:
      fps = fps or video.fps
      positions = timeline.positions_at_fps(len(video), video.fps, fps)
    mask = applications.observation_mask(len(video), drop, keep_every, seed)
    return applications.interpolate(self.renderer, video, wplus, positions, fps, mask)

  def extrapolate(self, video, inversions, seconds):
    video, wplus = self._video_and_codes(video, inversions)
    return applications.extrapolate(self.renderer, video, wplus, seconds)

  def transfer_motion(self, video, inversions, driving, region=None, mask=None):
    """region: 'x0,y0,x1,y1' in pixels of the video's frames as read; or mask: a mask image's path."""
    video_read = self.read_video(video)
    height, width = video_read.native_size
    area = regions.parse_box(region, height, width) if region is not None else regions.read_mask(mask)
    area = regions.to_frame(area, self.run.frame_format)
    wplus = self._invert(video_read, inversions, "--inversions")
    return applications.transfer_motion(self.renderer, video_read, wplus, self.read_video(driving), area)

  def blend_motion(self, video, inversions, video_b, weight):
    video, wplus = self._video_and_codes(video, inversions)
    return applications.blend_motion(self.renderer, video, wplus, self.read_video(video_b), weight)
