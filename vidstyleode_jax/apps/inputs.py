"""Inputs of the applications: videos (files or frame folders), still images and their W+ inversions.

Frames are brought to the run's config.data height x width as dataset preparation does (data/inputs.py: aspect
kept, centre crop, antialiased bilinear; frame folders ordered by the frame number in the file name); a frame already
at that size is used as it is. Inversions come from a .npy file ([frames, n_latent, style_dim], one per input frame)
or from a ported pSp encoder run on the frames as read.
"""

import dataclasses
import os

import numpy as np
from PIL import Image

from vidstyleode_jax import inversion
from vidstyleode_jax import ported
from vidstyleode_jax import video_io
from vidstyleode_jax.apps.errors import AppError
from vidstyleode_jax.data import inputs as data_inputs

FOLDER_FPS = 25.0  # frame folders carry no frame rate; --input-fps overrides it


@dataclasses.dataclass(frozen=True)
class Video:
  """frames: [time, height, width, 3] uint8 at the config's data size; native: the frames as read (for pSp and for
  pixel regions); fps: frames per second; path: where they came from."""

  frames: np.ndarray
  native: np.ndarray
  fps: float
  path: str

  def __len__(self):
    return self.frames.shape[0]

  @property
  def frames01(self):
    """[1, time, height, width, 3] float32 in [0, 1]: the encoder's input for this video."""
    return self.frames[None].astype(np.float32) / 255.0


def resize_frames(frames, height, width):
  """frames: [time, h, w, 3] uint8 -> [time, height, width, 3] uint8 as dataset preparation resizes (unchanged if
  already that size)."""
  if frames.shape[1:3] == (height, width):
    return frames
  return np.stack([data_inputs.cover_resize(Image.fromarray(f), height, width) for f in frames])


def _read_image(path):
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError) as err:
    raise AppError(f"Could not read image {path}: {err}") from None


def _read_frame_folder(path):
  try:
    numbered = data_inputs.frame_files(path)
  except data_inputs.UnusableVideo as err:
    raise AppError(str(err)) from None
  if not numbered:
    raise AppError(f"Frame folder {path} holds no {'/'.join(data_inputs.FRAME_EXTENSIONS)} files")
  frames = [_read_image(frame_path) for _, frame_path in numbered]
  if len({f.shape for f in frames}) > 1:
    raise AppError(f"Frames in {path} do not all have the same size: {sorted({f.shape for f in frames})}")
  return np.stack(frames), FOLDER_FPS


def read_video(path, height, width, max_frames=None, fps=None):
  """A video file or a folder of numbered frames, at most max_frames from the start, resized to height x width.

  fps: overrides the frame rate the file reports (a folder has none: FOLDER_FPS).
  """
  if os.path.isdir(path):
    native, file_fps = _read_frame_folder(path)
  elif not os.path.isfile(path):
    raise AppError(f"Video not found: {path}")
  else:
    try:
      native, file_fps = video_io.read_video(path)
    except OSError as err:
      raise AppError(f"Could not read video {path}: {str(err).splitlines()[-1] if str(err) else err}") from None
  native = native[:max_frames]
  fps = fps or file_fps
  if not fps > 0:
    raise AppError(f"{path} does not report a frame rate: pass --input-fps")
  return Video(resize_frames(native, height, width), native, float(fps), path)


def read_image(path, height, width):
  """A still image as a one-frame Video (fps 1)."""
  if not os.path.isfile(path):
    raise AppError(f"Image not found: {path}")
  native = _read_image(path)[None]
  return Video(resize_frames(native, height, width), native, 1.0, path)


def read_inversions(path, count, n_latent, style_dim, max_frames=None):
  """[count, n_latent, style_dim] float32 W+ codes from a .npy file holding one code per input frame."""
  if not os.path.isfile(path):
    raise AppError(f"Inversions file not found: {path}")
  try:
    codes = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as err:
    raise AppError(f"Could not read inversions {path}: {err}") from None
  codes = codes[:max_frames] if codes.ndim == 3 else codes
  if codes.shape != (count, n_latent, style_dim):
    raise AppError(f"Inversions {path} have shape {codes.shape}; expected {(count, n_latent, style_dim)} (one "
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
      except (OSError, ported.PortedWeightsError) as err:
        raise AppError(f"Could not load the pSp encoder in {psp_dir}: {err}") from None
      if (self._inverter.n_styles, self._inverter.style_dim) != (n_latent, style_dim):
        raise AppError(f"The pSp encoder in {psp_dir} gives [{self._inverter.n_styles}, {self._inverter.style_dim}] "
                       f"codes but the generator needs [{n_latent}, {style_dim}]")

  def __call__(self, video, path, flag):
    """[len(video), n_latent, style_dim] codes of `video`: read from `path`, or computed by pSp when path is None."""
    if path is not None:
      return read_inversions(path, len(video), self.n_latent, self.style_dim, self.max_frames)
    if self._inverter is None:
      raise AppError(f"{video.path} needs W+ inversions: pass {flag} FILE.npy or --psp DIR")
    return self._inverter(video.native)
