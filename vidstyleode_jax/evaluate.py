"""Held-out evaluation and sample videos.

Evaluation encodes T evenly spaced frames of each held-out video, decodes W+ at the same times and compares the
rendered frames with the real ones (MSE in [-1, 1] at the data size). The content-only baseline renders z_C for
every frame: a model that learned nothing about motion cannot beat it.

Sample grids show, per held-out video: real | reconstruction | edited (towards the previous video's description,
as in training) | dynamics swapped (z0 of the previous video with this video's content and style).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from vidstyleode_jax import inference
from vidstyleode_jax import video_io


SAMPLE_COLUMNS = ("real", "reconstruction", "edited", "dynamics swapped")


def eval_frame_numbers(frames_per_video, frames_per_clip):
  return np.round(np.linspace(0, frames_per_video - 1, frames_per_clip)).astype(np.int64)


def eval_clips(nets, videos, tokens, num_videos=None):
  """Evenly spaced clips of the first num_videos held-out videos: (frames01, wplus, tokens, times)."""
  d = nets.config.data
  frame_numbers = eval_frame_numbers(videos.frames.shape[1], d.frames_per_clip)
  count = len(videos) if num_videos is None else num_videos
  frames01 = videos.frames[:count][:, frame_numbers].astype(np.float32) / 255.0
  times = (frame_numbers / d.video_length).astype(np.float32)
  return frames01, videos.wplus[:count][:, frame_numbers], tokens[:count], times


def make_evaluate(nets):
  """-> jitted (params, frozen_vars, frames01, wplus, times) -> dict(rec_mse, content_mse)."""

  def evaluate(params, frozen_vars, frames01, wplus, times):
    real = frames01 * 2.0 - 1.0
    mask = jnp.ones(frames01.shape[:2])
    _, reconstruction = inference.reconstruct(nets, params, frozen_vars, frames01, wplus, times, mask, times)
    content = inference.content_code(wplus)
    _, baseline = inference.render_frames(nets, frozen_vars, content)
    return dict(
        rec_mse=jnp.mean(jnp.square(reconstruction - real)),
        content_mse=jnp.mean(jnp.square(baseline[:, None] - real)),
    )

  return jax.jit(evaluate)


def make_sample_columns(nets):
  """-> jitted (params, frozen_vars, frames01, wplus, tokens, times) -> dict of [batch, T, H, W, 3] in [-1, 1]."""
  model = nets.model

  def columns(params, frozen_vars, frames01, wplus, tokens, times):
    content = inference.content_code(wplus)
    style, _ = inference.style_token(nets, frozen_vars, content)
    text = nets.frozen.clip_text(frozen_vars, tokens)
    direction = nets.config.loss.manipulation_strength * (jnp.roll(text, 1, axis=0) - text)
    mask = jnp.ones(frames01.shape[:2])
    z0 = model.apply(params, inference.dynamics_input(nets, frames01), times, mask, method=model.encode)
    render = lambda z, s: inference.render_frames(
        nets, frozen_vars, model.apply(params, model.apply(params, z, times, method=model.solve)[0], content, s,
                                       method=model.latents)
    )[1]
    return {
        "real": frames01 * 2.0 - 1.0,
        "reconstruction": render(z0, style),
        "edited": render(z0, style + direction),
        "dynamics swapped": render(jnp.roll(z0, 1, axis=0), style),
    }

  return jax.jit(columns)


def write_samples(workdir, step, columns, fps):
  """Writes samples/step_<step>.mp4 and .gif: one row per video, one column per variant (SAMPLE_COLUMNS order)."""
  folder = os.path.join(workdir, "samples")
  os.makedirs(folder, exist_ok=True)
  grid = video_io.video_grid({name: np.asarray(columns[name]) for name in SAMPLE_COLUMNS})
  stem = os.path.join(folder, f"step_{step:07d}")
  video_io.write_mp4(stem + ".mp4", grid, fps)
  video_io.write_gif(stem + ".gif", grid, fps)
  return stem
