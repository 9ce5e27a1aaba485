"""Frame numbers, seconds and model time.

As in training (docs/model.md §3), frame k of a video is at model time k / config.data.video_length, so the first
input frame is at time 0 and video_length frames make one unit of model time, whatever the file's frame rate. A time
in seconds s is frame s * fps of the input video. Times are computed in float64 and returned as float32.
"""

import numpy as np

from vidstyleode_jax.errors import UserError


def model_times(frame_positions, video_length):
  """frame_positions: [n] input frame numbers (fractions allowed) -> [n] float32 model times."""
  return (np.asarray(frame_positions, np.float64) / video_length).astype(np.float32)


def frame_times(num_frames, video_length):
  """Model times of the frames 0 .. num_frames - 1 of a video: [num_frames] float32."""
  return model_times(np.arange(num_frames), video_length)


def positions_at_fps(num_frames, fps_in, fps_out):
  """Frame positions of an output at fps_out spanning the input's first to last frame: [n] float64."""
  if not fps_out > 0:
    raise UserError(f"--fps must be > 0, got {fps_out}")
  count = int(np.floor((num_frames - 1) * fps_out / fps_in + 1e-9)) + 1
  return np.arange(count) * fps_in / fps_out


def positions_of_seconds(seconds, fps_in):
  """Times in seconds -> frame positions of the input video: [n] float64."""
  return np.asarray(seconds, np.float64) * fps_in


def extrapolation_positions(num_frames, fps_in, seconds):
  """The input's frames followed by round(seconds * fps_in) more at the same rate: [n] float64."""
  if not seconds > 0:
    raise UserError(f"--seconds must be > 0, got {seconds}")
  return np.arange(num_frames + int(round(seconds * fps_in)), dtype=np.float64)


def check_increasing(positions, flag):
  """Raises UserError unless the positions are >= 0 and strictly increasing (the ODE is solved forward in time)."""
  positions = np.asarray(positions)
  if positions.size == 0:
    raise UserError(f"{flag} gives no times")
  if positions[0] < 0 or np.any(np.diff(positions) <= 0):
    raise UserError(f"{flag} must list times >= 0 in strictly increasing order, got {positions.tolist()}")
  return positions


def parse_numbers(text, flag):
  """'0,1.5,3' -> [0.0, 1.5, 3.0]; raises UserError naming the flag otherwise."""
  try:
    return [float(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise UserError(f"{flag} must be comma-separated numbers, got {text!r}") from None
