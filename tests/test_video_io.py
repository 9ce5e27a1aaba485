"""video_io: mp4/gif round trips, atomic writes, read errors, and the titled grid."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image, ImageFont, ImageSequence

from vidstyleode_jax import video_io

# Mean abs error (0..255) allowed after an H.264 round trip at crf 18. Most of it is yuv420p chroma subsampling of
# a colourful gradient (crf 0 still gives ~3.2 on this clip; crf 18 gives ~3.5).
MP4_TOLERANCE = 8.0
# Gif keeps 256 colours per frame; the adaptive palette gives ~7 on this clip.
GIF_TOLERANCE = 10.0


def moving_gradient(time=12, height=48, width=64):
  """[time, height, width, 3] uint8: smooth colour waves that move one period over the clip."""
  t = np.arange(time)[:, None, None] / time
  y = np.arange(height)[None, :, None] / height
  x = np.arange(width)[None, None, :] / width
  shape = (time, height, width)
  red = np.broadcast_to(127.5 + 120 * np.sin(2 * np.pi * (x + t)), shape)
  green = np.broadcast_to(127.5 + 120 * np.cos(2 * np.pi * (y - t)), shape)
  blue = np.broadcast_to(255 * (x + y) / 2, shape)
  return np.round(np.stack([red, green, blue], axis=-1)).astype(np.uint8)


def per_frame_error(decoded, source):
  return np.abs(decoded.astype(np.float64) - source.astype(np.float64)).mean(axis=(1, 2, 3))


def test_to_uint8_maps_minus_one_to_one_onto_0_255():
  floats = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32)
  np.testing.assert_array_equal(video_io.to_uint8(floats), [0, 0, 128, 191, 255, 255])
  already = np.array([0, 7, 255], np.uint8)
  np.testing.assert_array_equal(video_io.to_uint8(already), already)


def test_mp4_round_trip(tmp_path):
  source = moving_gradient()
  path = str(tmp_path / "clip.mp4")
  video_io.write_mp4(path, source, fps=10)
  decoded, fps = video_io.read_video(path)

  assert decoded.shape == source.shape and decoded.dtype == np.uint8
  assert fps == 10.0
  errors = per_frame_error(decoded, source)
  assert errors.max() < MP4_TOLERANCE, errors
  # The clip moves enough that frames in the wrong order would fail the tolerance.
  assert per_frame_error(decoded[1:], source[:-1]).min() > 2 * MP4_TOLERANCE
  assert os.listdir(tmp_path) == ["clip.mp4"]


def test_mp4_from_floats_matches_uint8_source(tmp_path):
  source = moving_gradient()
  path = str(tmp_path / "clip.mp4")
  video_io.write_mp4(path, source.astype(np.float32) / 127.5 - 1.0, fps=10)
  decoded, _ = video_io.read_video(path)
  assert per_frame_error(decoded, source).max() < MP4_TOLERANCE


def test_mp4_pads_odd_sizes_to_even(tmp_path):
  source = moving_gradient(height=47, width=63)
  path = str(tmp_path / "odd.mp4")
  video_io.write_mp4(path, source, fps=8)
  decoded, fps = video_io.read_video(path)

  assert decoded.shape == (12, 48, 64, 3)
  assert fps == 8.0
  assert per_frame_error(decoded[:, :47, :63], source).max() < MP4_TOLERANCE
  # The padding repeats the last row and column.
  assert per_frame_error(decoded[:, 47:, :63], source[:, 46:, :]).max() < MP4_TOLERANCE
  assert per_frame_error(decoded[:, :47, 63:], source[:, :, 62:]).max() < MP4_TOLERANCE


def test_gif_round_trip(tmp_path):
  source = moving_gradient()
  path = str(tmp_path / "clip.gif")
  video_io.write_gif(path, source, fps=10)

  with Image.open(path) as gif:
    stored_delays_ms = []
    decoded = []
    for frame in ImageSequence.Iterator(gif):
      stored_delays_ms.append(frame.info["duration"])
      decoded.append(np.asarray(frame.convert("RGB")))
  decoded = np.stack(decoded)
  assert decoded.shape == source.shape
  assert stored_delays_ms == [100] * 12  # the GIF header's per-frame delay, 1000 ms / fps
  assert per_frame_error(decoded, source).max() < GIF_TOLERANCE
  assert os.listdir(tmp_path) == ["clip.gif"]


@pytest.mark.parametrize("writer", [video_io.write_mp4, video_io.write_gif])
def test_invalid_frames_leave_no_file(tmp_path, writer):
  path = str(tmp_path / "bad.video")
  with pytest.raises(ValueError, match=r"bad\.video.*\(48, 64, 3\)"):
    writer(path, moving_gradient()[0], 10)
  assert os.listdir(tmp_path) == []


def test_failed_encode_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
  path = str(tmp_path / "clip.mp4")
  with open(path, "wb") as f:
    f.write(b"old")
  monkeypatch.setattr(video_io.imageio_ffmpeg, "get_ffmpeg_exe", lambda: shutil.which("false"))
  with pytest.raises(OSError, match="ffmpeg failed to write .*clip.mp4"):
    video_io.write_mp4(path, moving_gradient(), fps=10)
  assert os.listdir(tmp_path) == ["clip.mp4"]
  with open(path, "rb") as f:
    assert f.read() == b"old"


def test_read_video_errors_name_the_file(tmp_path):
  missing = str(tmp_path / "missing.mp4")
  with pytest.raises(FileNotFoundError, match="missing.mp4"):
    video_io.read_video(missing)
  garbage = str(tmp_path / "garbage.mp4")
  with open(garbage, "w") as f:
    f.write("not a video")
  with pytest.raises(OSError, match="garbage.mp4"):
    video_io.read_video(garbage)


def test_video_grid_places_resized_columns_below_a_header():
  batch, time, height, width = 2, 3, 32, 96
  rng = np.random.default_rng(0)
  real = rng.integers(0, 256, (batch, time, height, width, 3), dtype=np.uint8)
  half = rng.integers(0, 256, (batch, time, height // 2, width // 2, 3), dtype=np.uint8)
  edited = real[::-1].astype(np.float32) / 127.5 - 1.0

  grid = video_io.video_grid({"real": real, "reconstruction": half, "edited": edited})

  separator = video_io.SEPARATOR_PX
  header_height = grid.shape[1] - batch * (height + separator)
  assert grid.shape == (time, header_height + batch * (height + separator), 3 * width + 2 * separator, 3)
  assert grid.dtype == np.uint8
  assert header_height > 0
  expected_columns = [real, half.repeat(2, axis=2).repeat(2, axis=3), real[::-1]]
  for row in range(batch):
    top = header_height + separator + row * (height + separator)
    for column, expected in enumerate(expected_columns):
      left = column * (width + separator)
      np.testing.assert_array_equal(grid[:, top:top + height, left:left + width], expected[row])
    np.testing.assert_array_equal(grid[:, top - separator:top], video_io.BACKGROUND_VALUE)
  for column in range(1, 3):
    left = column * (width + separator)
    np.testing.assert_array_equal(grid[:, :, left - separator:left], video_io.BACKGROUND_VALUE)

  # Each column's header cell holds dark text pixels; the titles differ, so the cells differ.
  header_cells = [grid[0, :header_height, column * (width + separator):][:, :width] for column in range(3)]
  for cell in header_cells:
    assert (cell < 128).sum() > 20
  assert not np.array_equal(header_cells[0], header_cells[1])
  for frame in grid[1:]:
    np.testing.assert_array_equal(frame[:header_height], grid[0, :header_height])


def test_video_grid_widens_cells_for_long_titles():
  title = "dynamics swapped"
  narrow = np.zeros((1, 2, 16, 8, 3), np.uint8)
  grid = video_io.video_grid({title: narrow})
  assert grid.shape[2] >= ImageFont.load_default().getbbox(title)[2]
  # The black video sits whole below the header, in a white cell.
  body = grid[:, grid.shape[1] - 16:]
  assert (body == 0).all(axis=-1).sum() == 2 * 16 * 8


def test_video_grid_rejects_mismatched_batch():
  with pytest.raises(ValueError, match="'edited'.*'real'"):
    video_io.video_grid({"real": np.zeros((2, 3, 8, 8, 3), np.uint8), "edited": np.zeros((1, 3, 8, 8, 3), np.uint8)})
