"""Writing results: the output video (mp4 or gif by extension), the side-by-side comparison and raw frames (.npy).

Every file is written atomically (a temporary file in the same folder, then renamed), so a failure leaves none.
"""

import os

import numpy as np

from vidstyleode_jax import files
from vidstyleode_jax import video_io
from vidstyleode_jax.errors import UserError

WRITERS = {".mp4": video_io.write_mp4, ".gif": video_io.write_gif}


def check_output_path(path, flag="--output"):
  """Raises UserError before any work if `path` cannot be written: unknown extension or missing folder."""
  extension = os.path.splitext(path)[1].lower()
  if extension not in WRITERS:
    raise UserError(f"{flag} {path}: the extension must be one of {sorted(WRITERS)}")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f"{flag} {path}: folder {folder} does not exist")


def compare_path(path):
  """OUT.mp4 -> OUT_compare.mp4."""
  stem, extension = os.path.splitext(path)
  return f"{stem}_compare{extension}"


def write_video(path, frames, fps):
  """frames: [N, H, W, 3] uint8 or float in [-1, 1]."""
  WRITERS[os.path.splitext(path)[1].lower()](path, frames, fps)


def save_npy(path, array):
  """np.save, atomically."""
  with files.atomic_file(path, binary=True) as f:
    np.save(f, array)


def write_result(result, path, title, side_by_side=False, frames_path=None):
  """Writes result.frames to `path`, the inputs | output grid to OUT_compare, and the raw float32 frames."""
  written = []
  if frames_path is not None:
    save_npy(frames_path, result.frames.astype(np.float32))
    written.append(frames_path)
  if side_by_side:
    columns = {name: video[None] for name, video in result.compare.items()}
    columns[title] = result.frames[None]
    write_video(compare_path(path), video_io.video_grid(columns), result.fps)
    written.append(compare_path(path))
  write_video(path, result.frames, result.fps)
  return [path] + written
