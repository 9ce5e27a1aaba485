"""Inputs of the applications: videos (files or frame folders), still images and their W+ inversions.

Frames become the model's input exactly as dataset preparation makes it (data/inputs.FrameFormat): the first
config.data.skip_frames frames of a video are dropped and every other frame is center-cropped to the generator's
aspect ratio and resized to the run's config.data height x width (antialiased bilinear); frame folders are ordered
by the frame number in the file name. Inversions come from a .npy file ([frames, n_latent, style_dim], one per kept
frame) or from a ported pSp encoder run on those same frames, so a video gets the W+ codes `prepare` would give it.
"""

import dataclasses
import os

import numpy as np
from PIL import Image

from vidstyleode_jax import inversion
from vidstyleode_jax import video_io
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.data import inputs as data_inputs

FOLDER_FPS = 25.0  # frame folders carry no frame rate; --input-fps overrides it


@dataclasses.dataclass(frozen=True)
class Video:
  """frames: [time, height, width, 3] uint8, the model's input; native_size: (height, width) of the frames as read
  (pixel regions are given in it); fps: frames per second; path: where they came from."""

  frames: np.ndarray
  native_size: tuple[int, int]
  fps: float
  path: str

  def __len__(self):
    return self.frames.shape[0]

  @property
  def frames01(self):
    """[1, time, height, width, 3] float32 in [0, 1]: the encoder's input for this video."""
    return self.frames[None].astype(np.float32) / 255.0


def _read_image(path):
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError) as err:
    raise UserError(f"Could not read image {path}: {err}") from None


def _read_frame_folder(path):
  try:
    numbered = data_inputs.frame_files(path)
  except data_inputs.UnusableVideo as err:
    raise UserError(str(err)) from None
  if not numbered:
    raise UserError(f"Frame folder {path} holds no {'/'.join(data_inputs.FRAME_EXTENSIONS)} files")
  frames = [_read_image(frame_path) for _, frame_path in numbered]
  if len({f.shape for f in frames}) > 1:
    raise UserError(f"Frames in {path} do not all have the same size: {sorted({f.shape for f in frames})}")
  return np.stack(frames), FOLDER_FPS


def read_video(path, frame_format, max_frames=None, fps=None):
  """A video file or a folder of numbered frames as the model's input (a data/inputs.FrameFormat), at most
  max_frames of them.

  fps: overrides the frame rate the file reports (a folder has none: FOLDER_FPS).
  """
  if os.path.isdir(path):
    native, file_fps = _read_frame_folder(path)
  elif not os.path.isfile(path):
    raise UserError(f"Video not found: {path}")
  else:
    try:
      native, file_fps = video_io.read_video(path)
    except OSError as err:
      raise UserError(f"Could not read video {path}: {str(err).splitlines()[-1] if str(err) else err}") from None
  fps = fps or file_fps
  if not fps > 0:
    raise UserError(f"{path} does not report a frame rate: pass --input-fps")
  frames, count = frame_format.frames(native)
  if not len(frames):
    raise UserError(f"{path}: {count} frames, none left after dropping the first config.data.skip_frames="
                    f"{frame_format.skip_frames}")
  return Video(frames[:max_frames], native.shape[1:3], float(fps), path)


def read_image(path, frame_format):
  """A still image as a one-frame Video (fps 1)."""
  if not os.path.isfile(path):
    raise UserError(f"Image not found: {path}")
  native = _read_image(path)[None]
  return Video(frame_format.frames(native, skip=False)[0], native.shape[1:3], 1.0, path)


def read_inversions(path, count, n_latent, style_dim, max_frames=None):
  """[count, n_latent, style_dim] float32 W+ codes from a .npy file holding one code per input frame."""
  if not os.path.isfile(path):
    raise UserError(f"Inversions file not found: {path}")
  try:
    codes = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as err:
    raise UserError(f"Could not read inversions {path}: {err}") from None
  codes = codes[:max_frames] if codes.ndim == 3 else codes
  if codes.shape != (count, n_latent, style_dim):
    raise UserError(f"Inversions {path} have shape {codes.shape}; expected {(count, n_latent, style_dim)} (one "
                    f"[n_latent, style_dim] code per input frame)")
  return codes.astype(np.float32)


class Inversions:
  """W+ codes of input frames: from --inversions files, or from a ported pSp encoder (loaded once)."""

  def __init__(self, n_latent, style_dim, psp_dir=None, max_frames=None):
    self.n_latent, self.style_dim, self.max_frames = n_latent, style_dim, max_frames
    self._inverter = None
    if psp_dir is not None:
      try:
        self._inverter = inversion.Inverter.from_ported(psp_dir, batch_size=8)
      except (OSError, UserError) as err:
        raise UserError(f"Could not load the pSp encoder in {psp_dir}: {err}") from None
      if (self._inverter.n_styles, self._inverter.style_dim) != (n_latent, style_dim):
        raise UserError(f"The pSp encoder in {psp_dir} gives [{self._inverter.n_styles}, {self._inverter.style_dim}] "
                        f"codes but the generator needs [{n_latent}, {style_dim}]")

  def __call__(self, video, path, flag):
    """[len(video), n_latent, style_dim] codes of `video`: read from `path`, or computed by pSp when path is None."""
    if path is not None:
      return read_inversions(path, len(video), self.n_latent, self.style_dim, self.max_frames)
    if self._inverter is None:
      raise UserError(f"{video.path} needs W+ inversions: pass {flag} FILE.npy or --psp DIR")
    return self._inverter(video.frames)
