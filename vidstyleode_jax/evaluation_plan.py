"""What the evaluate command measures on: one clip per held-out video, one frame of it for FID and IS, and an edit
target per video; all drawn from the seed alone (docs/metrics_protocol.md, "The evaluate command").

Clip of video v: `clip_frames` frames sampled at `clip_fps` from the video's usable frame numbers, its frame k at
start + floor(k * step + 0.5) with step = source rate / clip_fps (1, consecutive frames, when clip_fps is 0 or the
source rate unknown); the start is drawn uniformly, with numpy's generator seeded (seed, 0, v), among the starts at
which every frame of the clip exists. The FID / IS frame of video v is the clip frame drawn with (seed, 1, v). Both
depend on the video and the seed only, not on which other videos are evaluated.

Edit targets: the description of the next video in a random cycle through the evaluated videos (numpy's
permutation seeded (seed, 2)), so no video is edited toward itself and every description is a target once; or the
texts of a targets file.
"""

import dataclasses

import numpy as np

from vidstyleode_jax.errors import UserError

FIRST_LISTED = 5  # videos named in an error message


@dataclasses.dataclass(frozen=True)
class Clips:
  frame_numbers: np.ndarray  # [videos, clip_frames] int64 usable frame numbers of each clip
  source_fps: np.ndarray  # [videos] float64, the rate the step was computed from; 0 where unknown
  fid_frames: np.ndarray  # [videos] int64 index of the FID / IS frame in the clip

  def times(self, video_length: float) -> np.ndarray:
    """[videos, clip_frames] float32 model times: (frame number - clip start) / video_length, as the apps use."""
    return ((self.frame_numbers - self.frame_numbers[:, :1]) / video_length).astype(np.float32)


def clip_offsets(clip_frames: int, step: float) -> np.ndarray:
  """[clip_frames] int64 frame-number offsets of the clip frames from its start: floor(k * step + 0.5)."""
  return np.floor(np.arange(clip_frames) * step + 0.5).astype(np.int64)


def _describe(clip_frames: int, clip_fps: float) -> str:
  return f"a clip of {clip_frames} frames" + (f" at {clip_fps:g} fps" if clip_fps else " (consecutive frames)")


def plan_clips(videos, num_videos: int, clip_frames: int, clip_fps: float, source_fps: float | None,
               seed: int) -> Clips:
  """The clips of the first `num_videos` videos of a video source (data/sources.py).

  Args:
    videos: a VideoSource.
    num_videos: how many of its videos, from the first.
    clip_frames: frames per clip.
    clip_fps: the clip's frame rate, or 0 for consecutive frames.
    source_fps: overrides every video's own frame rate (videos.fps, 0 where unknown).
    seed: the evaluation seed.

  Raises:
    UserError: a video is too short for the clip, or its frame rate is below clip_fps.
  """
  frame_numbers, rates, too_short = [], [], []
  for v in range(num_videos):
    rate = source_fps or videos.fps[v]
    if clip_fps and rate and rate < clip_fps:
      raise UserError(f"video {videos.names[v]!r} is at {rate:g} fps, below --clip_fps={clip_fps:g}: lower "
                      "--clip_fps (or give its true rate with --source_fps)")
    offsets = clip_offsets(clip_frames, rate / clip_fps if clip_fps and rate else 1.0)
    usable = videos.frame_numbers[v]
    starts = usable[np.isin(usable[:, None] + offsets, usable).all(axis=1)]
    if not len(starts):
      too_short.append(f"{videos.names[v]!r} ({len(usable)} frames, the clip spans {offsets[-1] + 1})")
      continue
    start = starts[np.random.default_rng([seed, 0, v]).integers(len(starts))]
    frame_numbers.append(start + offsets)
    rates.append(rate)
  if too_short:
    listed = ", ".join(too_short[:FIRST_LISTED]) + (", ..." if len(too_short) > FIRST_LISTED else "")
    raise UserError(f"{len(too_short)} of the {num_videos} evaluated videos are too short for "
                    f"{_describe(clip_frames, clip_fps)}: {listed}; lower --clip_frames or --clip_fps")
  fid_frames = np.array([np.random.default_rng([seed, 1, v]).integers(clip_frames) for v in range(num_videos)])
  return Clips(np.stack(frame_numbers), np.array(rates, np.float64), fid_frames.astype(np.int64))


def cycle_targets(num_videos: int, seed: int) -> np.ndarray:
  """[videos] int64: each video's target video, the next one in a seeded random cycle through all of them."""
  order = np.random.default_rng([seed, 2]).permutation(num_videos)
  targets = np.empty(num_videos, np.int64)
  targets[order] = np.roll(order, -1)
  return targets


def read_targets(path: str, num_videos: int) -> list[str]:
  """The targets file: one text per line; one line for every video, or one line per evaluated video, in order."""
  try:
    with open(path, encoding="utf-8") as f:
      lines = [line.strip() for line in f.read().splitlines()]
  except (OSError, UnicodeDecodeError) as error:
    raise UserError(f"--targets {path}: cannot read it ({error})") from None
  lines = lines[:-1] if lines and not lines[-1] else lines
  empty = [k + 1 for k, line in enumerate(lines) if not line]
  if not lines or empty:
    raise UserError(f"--targets {path}: " + (f"line {empty[0]} is empty" if empty else "holds no text")
                    + "; expected one target text per line")
  if len(lines) not in (1, num_videos):
    raise UserError(f"--targets {path}: {len(lines)} lines for {num_videos} evaluated videos; expected one line "
                    "(the target of every video) or one line per video, in the split's order")
  return lines * num_videos if len(lines) == 1 else lines
