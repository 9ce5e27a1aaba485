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

from vidstyleode_jax import backends
from vidstyleode_jax import files
from vidstyleode_jax import inference
from vidstyleode_jax import video_io
from vidstyleode_jax.data import pipeline


SAMPLE_COLUMNS = ("real", "reconstruction", "edited", "dynamics swapped")


def eval_frame_numbers(shared_frame_numbers, frames_per_clip, clip_span=0):
  """frames_per_clip evenly spaced entries of the (sorted) frame numbers several videos share, the first included;
  with a clip span (data.clip_span > 0), of the first clip_span of them, the window a training clip lies in."""
  if clip_span:
    shared_frame_numbers = shared_frame_numbers[:clip_span]
  if len(shared_frame_numbers) < frames_per_clip:
    raise ValueError(f"the evaluation videos share {len(shared_frame_numbers)} frame numbers, fewer than "
                     f"data.frames_per_clip={frames_per_clip}")
  return shared_frame_numbers[np.round(np.linspace(0, len(shared_frame_numbers) - 1, frames_per_clip)).astype(int)]


def eval_clips(nets, videos, tokens, num_videos=None):
  """Evenly spaced clips of the first held-out videos, read through their video source (data/sources.py).

  num_videos defaults to config.data.num_eval_videos (at most all of them). The clips take frames_per_clip evenly
  spaced frame numbers among those the videos share (among the first data.clip_span of them). Returns
  (frames01 [b, T, H, W, 3] float32 in [0, 1], wplus [b, T, n_latent, style_dim], tokens [b, context], times [T]).
  """
  d = nets.config.data
  video_ids = np.arange(min(len(videos), d.num_eval_videos if num_videos is None else num_videos))
  frame_numbers = eval_frame_numbers(pipeline.shared_frame_numbers(videos.frame_numbers, video_ids),
                                     d.frames_per_clip, d.clip_span)
  batch = pipeline.make_batch(videos, tokens, video_ids, frame_numbers, d.video_length)
  return batch["frames"].astype(np.float32) / 255.0, batch["wplus"], batch["tokens"], batch["times"][0]


def make_evaluate(nets):
  """-> jitted (params, frozen_vars, frames01, wplus, times) -> dict(rec_mse, content_mse)."""

  def evaluate(params, frozen_vars, frames01, wplus, times):
    real = frames01 * 2.0 - 1.0
    mask = jnp.ones(frames01.shape[:2])
    _, reconstruction = inference.reconstruct(nets, params, frozen_vars, frames01, wplus, times, mask, times)
    content = inference.content_code(nets.config, wplus)
    _, baseline = inference.render_frames(nets, frozen_vars, content)
    return dict(
        rec_mse=jnp.mean(jnp.square(reconstruction - real)),
        content_mse=jnp.mean(jnp.square(baseline[:, None] - real)),
    )

  return jax.jit(evaluate, compiler_options=backends.compiler_options())


def make_sample_columns(nets):
  """-> jitted (params, frozen_vars, frames01, wplus, tokens, times) -> dict of [batch, T, H, W, 3] in [-1, 1]."""
  model = nets.model

  def columns(params, frozen_vars, frames01, wplus, tokens, times):
    content = inference.content_code(nets.config, wplus)
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

  return jax.jit(columns, compiler_options=backends.compiler_options())


def write_samples(workdir, step, columns, fps):
  """Writes samples/step_<step>.mp4 and .gif: one row per video, one column per variant (SAMPLE_COLUMNS order)."""
  folder = os.path.join(workdir, files.SAMPLES_DIR)
  os.makedirs(folder, exist_ok=True)
  grid = video_io.video_grid({name: np.asarray(columns[name]) for name in SAMPLE_COLUMNS})
  stem = os.path.join(folder, f"step_{step:07d}")
  video_io.write_mp4(stem + ".mp4", grid, fps)
  video_io.write_gif(stem + ".gif", grid, fps)
  return stem
