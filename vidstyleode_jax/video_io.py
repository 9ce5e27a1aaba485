"""Video files and sample grids: H.264 mp4 (the ffmpeg shipped by imageio-ffmpeg), gif (Pillow), and a titled grid.

Frames are channel-last RGB. Functions that take frames accept either uint8 in [0, 255] or floats in [-1, 1]
(the generator's range; values outside are clipped). Writes are atomic: the file is written under a temporary name
in the target directory and renamed into place, so a failed write leaves no partial file and keeps an older one.
"""

import errno
import os
import subprocess
from typing import Mapping

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidstyleode_jax import files

SEPARATOR_PX = 2
HEADER_PADDING_PX = 3
BACKGROUND_VALUE = 255
TEXT_COLOUR = (0, 0, 0)


def to_uint8(frames: np.ndarray) -> np.ndarray:
  """uint8 frames are returned as they are; float frames in [-1, 1] map to round((x + 1) * 127.5), clipped."""
  frames = np.asarray(frames)
  if frames.dtype == np.uint8:
    return frames
  if not np.issubdtype(frames.dtype, np.floating):
    raise ValueError(f"Frames must be uint8 or float in [-1, 1]; got dtype {frames.dtype}.")
  return np.clip(np.round((frames.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_m11(frames):
  """uint8 frames (NumPy or JAX) -> float32 in [-1, 1], u / 127.5 - 1: the inverse of to_uint8 on its outputs."""
  return frames.astype(np.float32) / 127.5 - 1.0


def _checked_video(frames: np.ndarray, fps: float, path: str) -> np.ndarray:
  """Validates frames [time, height, width, 3] and fps for writing to `path`; returns the frames as uint8."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
    raise ValueError(
        f"Cannot write {path}: frames must be [time, height, width, 3] with time >= 1; got shape {frames.shape}.")
  if not fps > 0:
    raise ValueError(f"Cannot write {path}: fps must be > 0, got {fps}.")
  return to_uint8(frames)


def write_mp4(path: str, frames: np.ndarray, fps: float, crf: int = 18) -> None:
  """Writes an H.264 (libx264, yuv420p) mp4 atomically.

  Args:
    path: output file; its directory must exist.
    frames: [time, height, width, 3] uint8, or float in [-1, 1]. yuv420p needs even sizes, so an odd height or width
      is padded by one row / column repeating the edge (the file is then one pixel larger).
    fps: frames per second, > 0.
    crf: x264 constant rate factor, 0 (lossless in YUV) to 51; 18 is visually near-lossless.
  """
  frames = _checked_video(frames, fps, path)
  _, height, width, _ = frames.shape
  frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
  _, height, width, _ = frames.shape
  with files.atomic_path(path) as temp_path:
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
        "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-movflags", "+faststart",
        "-f", "mp4", temp_path,
    ]
    result = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if result.returncode != 0:
      code = errno.ENOSPC if b"No space left" in result.stderr else errno.EIO
      raise OSError(code, f"ffmpeg failed to write {path} (exit {result.returncode}): "
                    f"{result.stderr.decode(errors='replace')[-2000:]}")


def write_gif(path: str, frames: np.ndarray, fps: float) -> None:
  """Writes a looping gif atomically with Pillow (adaptive 256-colour palette per frame).

  Args:
    path: output file; its directory must exist.
    frames: [time, height, width, 3] uint8, or float in [-1, 1].
    fps: frames per second, > 0. Gif stores delays in 10 ms units, so it is rounded to that. Pillow merges
      consecutive identical frames into one longer frame.
  """
  frames = _checked_video(frames, fps, path)
  images = [Image.fromarray(frame) for frame in frames]
  with files.atomic_path(path) as temp_path:
    images[0].save(
        temp_path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def read_video(path: str) -> tuple[np.ndarray, float]:
  """Decodes every frame of a video file with imageio-ffmpeg.

  Returns:
    frames: [time, height, width, 3] uint8 RGB.
    fps: frames per second as ffmpeg reports it (0.0 if the container does not say).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Video file not found: {path}")
  try:
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]
  except (OSError, RuntimeError, ValueError, KeyError, IndexError) as err:  # what imageio-ffmpeg raises
    raise OSError(f"Could not read video {path}: {err}") from err
  if not frames:
    raise OSError(f"Could not read video {path}: it holds no decodable frames.")
  return np.stack(frames), float(meta["fps"])


def _resize_to_height(videos: np.ndarray, height: int) -> np.ndarray:
  """Nearest-neighbour resize of [batch, time, h, w, 3] uint8 to the given height, keeping the aspect ratio."""
  batch, time, old_height, old_width, _ = videos.shape
  if old_height == height:
    return videos
  width = max(1, round(old_width * height / old_height))
  resized = [np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.NEAREST))
             for frame in videos.reshape(batch * time, old_height, old_width, 3)]
  return np.stack(resized).reshape(batch, time, height, width, 3)


def video_grid(columns: Mapping[str, np.ndarray]) -> np.ndarray:
  """Tiles videos into one titled grid video.

  Rows are the videos of the batch; columns are the named variants, in the mapping's order ("real",
  "reconstruction", "edited", ...). A header row shows each column's title in Pillow's default font. Cells are
  separated by SEPARATOR_PX of background. Every column is resized (nearest neighbour, aspect kept) to the first
  column's height; a cell is widened to fit its title, with the video centred in it.

  Args:
    columns: title -> [batch, time, height, width, 3] uint8 or float in [-1, 1]; batch and time shared by all.

  Returns:
    [time, total_height, total_width, 3] uint8.
  """
  if not columns:
    raise ValueError("video_grid needs at least one column.")
  videos = {title: to_uint8(video) for title, video in columns.items()}
  for title, video in videos.items():
    if video.ndim != 5 or video.shape[-1] != 3:
      raise ValueError(f"Column {title!r} must be [batch, time, height, width, 3]; got shape {video.shape}.")
  first_title, first_video = next(iter(videos.items()))
  batch, time, cell_height = first_video.shape[:3]
  for title, video in videos.items():
    if video.shape[:2] != (batch, time):
      raise ValueError(
          f"Column {title!r} has [batch, time] = {list(video.shape[:2])} but column {first_title!r} has "
          f"{[batch, time]}.")
  videos = {title: _resize_to_height(video, cell_height) for title, video in videos.items()}

  font = ImageFont.load_default()
  text_boxes = {title: font.getbbox(title) for title in videos}
  text_height = max(box[3] for box in text_boxes.values())
  header_height = text_height + 2 * HEADER_PADDING_PX
  cell_widths = [max(video.shape[3], text_boxes[title][2] + 2 * HEADER_PADDING_PX)
                 for title, video in videos.items()]
  total_width = sum(cell_widths) + SEPARATOR_PX * (len(videos) - 1)
  total_height = header_height + batch * (SEPARATOR_PX + cell_height)

  header = Image.new("RGB", (total_width, header_height), (BACKGROUND_VALUE,) * 3)
  draw = ImageDraw.Draw(header)
  grid = np.full((time, total_height, total_width, 3), BACKGROUND_VALUE, np.uint8)
  left = 0
  for (title, video), cell_width in zip(videos.items(), cell_widths):
    text_left = left + (cell_width - text_boxes[title][2]) // 2
    draw.text((text_left, HEADER_PADDING_PX), title, fill=TEXT_COLOUR, font=font)
    video_left = left + (cell_width - video.shape[3]) // 2
    for row in range(batch):
      top = header_height + SEPARATOR_PX + row * (cell_height + SEPARATOR_PX)
      grid[:, top:top + cell_height, video_left:video_left + video.shape[3]] = video[row]
    left += cell_width + SEPARATOR_PX
  grid[:, :header_height] = np.asarray(header)
  return grid
