"""The applications of paper §4.1 and supplementary §10, on videos already read (inputs.Video) and their inversions.

Every application takes content (mean W+ inversion) and style (CLIP image embedding of G(content)) from one input,
motion (z0 of the dynamics encoder) from one or two inputs, and renders frames at the input's times (frame k at
model time k / video_length) or at the requested ones. Each returns a Result whose `compare` columns show the inputs
frame by frame beside the output (grey where an input has no frame at that time or hides it from the encoder).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vidstyleode_jax.apps import regions
from vidstyleode_jax.apps import timeline
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import dynamics

GREY = 128


@dataclasses.dataclass(frozen=True)
class Result:
  frames: np.ndarray  # [N, H, W, 3] float32 in about [-1, 1]
  fps: float
  compare: dict  # title -> [N, h, w, 3] uint8: the inputs, aligned in time with the output frames


def frames_at(frames, positions, shown=None):
  """frames: [T, H, W, 3] uint8 -> the frame nearest each position ([N]), grey past the end or where not shown."""
  indices = np.round(np.asarray(positions)).astype(np.int64)
  valid = (indices >= 0) & (indices < len(frames))
  if shown is not None:
    valid &= shown[np.clip(indices, 0, len(frames) - 1)]
  picked = frames[np.clip(indices, 0, len(frames) - 1)].copy()
  picked[~valid] = GREY
  return picked


def _motion(renderer, video, mask=None):
  """z0 [1, h', w', C] of a video from all its frames (or the frames where mask [T] is 1)."""
  times = timeline.frame_times(len(video), renderer.run.config.data.video_length)
  return renderer.encode(video.frames01, times, None if mask is None else mask[None])


def _decode_at_frames(renderer, z0, content, style, positions):
  return renderer.decode(z0, content, style, timeline.model_times(positions, renderer.run.config.data.video_length))


def edit(renderer, video, wplus, source_tokens, target_tokens, alpha):
  """Appearance from the text direction alpha * (CLIP_text(target) - CLIP_text(source)); the video's own motion."""
  content, style = renderer.appearance(wplus[None])
  direction = renderer.text_direction(source_tokens, target_tokens, alpha)
  positions = np.arange(len(video))
  frames = _decode_at_frames(renderer, _motion(renderer, video), content, style + direction, positions)
  return Result(frames, video.fps, {"input": video.frames})


def animate(renderer, image, image_wplus, driving):
  """Content and style of a still image (its one inversion), motion of the driving video, at the driving times."""
  content, style = renderer.appearance(image_wplus[None])
  positions = np.arange(len(driving))
  frames = _decode_at_frames(renderer, _motion(renderer, driving), content, style, positions)
  still = np.repeat(image.frames, len(driving), axis=0)
  return Result(frames, driving.fps, {"image": still, "driving": driving.frames})


def observation_mask(num_frames, drop=None, keep_every=None, seed=0):
  """[T] float32 in {0, 1}: which frames the encoder sees. drop: that many interior frames hidden, drawn with the
  seed (the training 'interpolate' mask); keep_every: frames 0, K, 2K, ... seen."""
  if drop is not None:
    try:
      return np.asarray(dynamics.observation_mask("interpolate", 1, num_frames, jax.random.key(seed), drop))[0]
    except ValueError as err:
      raise UserError(f"--drop {drop}: {err}") from None
  if keep_every is not None:
    if keep_every < 1:
      raise UserError(f"--keep-every must be >= 1, got {keep_every}")
    return (np.arange(num_frames) % keep_every == 0).astype(np.float32)
  return np.ones(num_frames, np.float32)


def interpolate(renderer, video, wplus, positions, fps, mask):
  """Frames at any frame positions (fractional = between input frames), the encoder seeing only frames where mask
  [T] is 1; the content code is the mean inversion of those frames too."""
  positions = timeline.check_increasing(positions, "the output times")
  observed = mask > 0
  content, style = renderer.appearance(wplus[observed][None])
  frames = _decode_at_frames(renderer, _motion(renderer, video, mask), content, style, positions)
  return Result(frames, fps, {"seen by the encoder": frames_at(video.frames, positions, observed)})


def extrapolate(renderer, video, wplus, seconds):
  """The input's frames and round(seconds * fps) more past its last frame, at its frame rate."""
  positions = timeline.extrapolation_positions(len(video), video.fps, seconds)
  content, style = renderer.appearance(wplus[None])
  frames = _decode_at_frames(renderer, _motion(renderer, video), content, style, positions)
  return Result(frames, video.fps, {"input": frames_at(video.frames, positions)})


def transfer_motion(renderer, video, wplus, driving, region):
  """Motion of `driving` inside the region ([H, W] bool on the model frames), of `video` outside it."""
  z_video, z_driving = _motion(renderer, video), _motion(renderer, driving)
  grid = regions.to_grid(region, *z_video.shape[1:3])
  if region.any() and not grid.any():
    raise UserError(f"The region covers less than half of every cell of the {grid.shape[0]}x{grid.shape[1]} "
                    f"dynamics grid (cells of {region.shape[0] / grid.shape[0]:g}x{region.shape[1] / grid.shape[1]:g} "
                    "pixels): make it larger")
  z0 = jnp.where(jnp.asarray(grid, bool)[None, :, :, None], z_driving, z_video)
  content, style = renderer.appearance(wplus[None])
  positions = np.arange(len(video))
  frames = _decode_at_frames(renderer, z0, content, style, positions)
  return Result(frames, video.fps, {"video": video.frames, "driving": frames_at(driving.frames, positions)})


def blend_motion(renderer, video, wplus, video_b, weight):
  """z0 = (1 - weight) * z0(video) + weight * z0(video_b); content and style of `video`."""
  z0 = (1.0 - weight) * _motion(renderer, video) + weight * _motion(renderer, video_b)
  content, style = renderer.appearance(wplus[None])
  positions = np.arange(len(video))
  frames = _decode_at_frames(renderer, z0, content, style, positions)
  return Result(frames, video.fps, {"video": video.frames, "video b": frames_at(video_b.frames, positions)})
