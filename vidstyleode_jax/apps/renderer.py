"""The model calls every application is made of, each jitted once per input shape.

encode: frames -> z0; appearance: W+ inversions -> content code and style token; text_direction; decode: z0,
content and style -> frames at any times. Decoding solves the latent ODE once for all requested times, then maps
and renders `batch_frames` frames per generator call (the last call is padded), so memory does not grow with the
number of output frames and a single compiled program renders every batch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from vidstyleode_jax import inference
from vidstyleode_jax.errors import UserError

RESOLUTIONS = ("generator", "data")


class Renderer:
  """Binds a TrainedRun; `resolution` picks the output size: the generator's, or config.data height x width."""

  def __init__(self, run, batch_frames=4, resolution="generator", progress=True):
    if batch_frames < 1:
      raise UserError(f"--batch-frames must be >= 1, got {batch_frames}")
    self.run, self.batch_frames, self.progress = run, batch_frames, progress
    nets, model = run.nets, run.nets.model
    output_index = RESOLUTIONS.index(resolution)

    def encode(params, frames01, times, mask):
      return model.apply(params, inference.dynamics_input(nets, frames01), times, mask, method=model.encode)

    def appearance(frozen_vars, wplus):
      content = inference.content_code(nets.config, wplus)
      return content, inference.style_token(nets, frozen_vars, content)[0]

    def render(params, frozen_vars, z_t, content, style):
      w = model.apply(params, z_t, content, style, method=model.latents)
      return inference.render_frames(nets, frozen_vars, w)[output_index]

    self._encode = jax.jit(encode)
    self._appearance = jax.jit(appearance)
    self._text_direction = jax.jit(lambda frozen_vars, source, target, alpha: inference.text_direction(
        nets, frozen_vars, source, target, alpha))
    self._solve = jax.jit(lambda params, z0, times: model.apply(params, z0, times, method=model.solve))
    self._render = jax.jit(render)

  def encode(self, frames01, times, mask=None):
    """frames01: [1, T, H, W, 3] in [0, 1]; times: [T]; mask: [1, T] (default all observed) -> z0 [1, h', w', C]."""
    mask = np.ones(frames01.shape[:2], np.float32) if mask is None else mask
    return self._encode(self.run.params, frames01, times, mask)

  def appearance(self, wplus):
    """wplus: [1, T, n_latent, style_dim] -> (content code [1, n_latent, style_dim], style token [1, embed])."""
    return self._appearance(self.run.frozen_vars, wplus)

  def text_direction(self, source_tokens, target_tokens, alpha):
    """alpha * (CLIP_text(target) - CLIP_text(source)): [1, embed]."""
    return self._text_direction(self.run.frozen_vars, source_tokens, target_tokens, jnp.float32(alpha))

  def decode(self, z0, content, style, times):
    """Frames at `times` ([N] float32, strictly increasing, >= 0; z0 is the state at time 0) -> [N, H, W, 3] float32
    in about [-1, 1]."""
    times = np.asarray(times, np.float32)
    prepend = times[0] > 0
    solve_times = np.concatenate([np.zeros(1, np.float32), times]) if prepend else times
    z_t, stats = self._solve(self.run.params, z0, solve_times)
    if not bool(stats["solve_ok"]):
      raise UserError(f"The latent ODE solve up to model time {float(times[-1]):.3f} needed more than "
                      f"dynamics.max_steps={self.run.config.dynamics.max_steps} steps: raise it with --ode-max-steps")
    z_t = z_t[:, 1:] if prepend else z_t
    frames = []
    starts = range(0, len(times), self.batch_frames)
    for start in tqdm.tqdm(starts, desc="rendering", unit="batch", disable=not self.progress):
      chunk = z_t[:, start:start + self.batch_frames]
      count = chunk.shape[1]
      padding = jnp.repeat(chunk[:, -1:], self.batch_frames - count, axis=1)
      chunk = jnp.concatenate([chunk, padding], axis=1)
      frames.append(np.asarray(self._render(self.run.params, self.run.frozen_vars, chunk, content, style))[0, :count])
    return np.concatenate(frames).astype(np.float32)
