"""The trainable VidStyleODE model: dynamics encoder, modulation network and W+ mapper.

For a video and any query times it produces W+ latents w_t = z_C + delta_scale * Δ_t, where z_C is the content
code (mean W+ inversion of the clip), Δ_t comes from the mapper conditioned on the style token and the dynamics
tokens at time t; without latent residuals (`residual=False`, paper Table 3) the mapper's output is w_t itself.
The frozen generator renders w_t (see models/frozen.py); this module never sees images at the
generator's resolution.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from vidstyleode_jax.models import dynamics as dynamics_lib
from vidstyleode_jax.models import mapper as mapper_lib
from vidstyleode_jax.models import modulation as modulation_lib
from vidstyleode_jax.models.config_fields import fields_of

CALL_ARGUMENTS = ("frames", "times", "mask", "query_times", "content", "styles")  # VidStyleODE.__call__'s, in order


class VidStyleODE(nn.Module):
  """Call methods through `apply(params, ..., method=VidStyleODE.<name>)`; `__call__` is the training path."""

  dynamics: dynamics_lib.DynamicsEncoder
  modulation: modulation_lib.ModulationNetwork
  mapper: mapper_lib.StyleMapper
  delta_scale: float = 0.01
  residual: bool = True

  def encode(self, frames, times, mask):
    """frames: [batch, T, h, w, 3] in [0, 1] at the dynamics resolution; times: [T]; mask: [batch, T] -> z0.

    z0 is the dynamics encoder's initial state (DynamicsEncoder: [batch, h', w', C], or 2C channels for "ode2").
    """
    return self.dynamics.encode(frames, times, mask)

  def solve(self, z0, query_times):
    """z0: the initial state from `encode`; query_times: [N] increasing -> (z_t [batch, N, h', w', C], stats)."""
    return self.dynamics.solve(z0, query_times)

  def latents(self, z_t, content, style):
    """Dynamics states and a style token -> W+ latents.

    Args:
      z_t: [batch, N, h', w', C] dynamics states at the query times.
      content: [batch, n_latent, style_dim] content codes z_C.
      style: [batch, embed] style tokens (CLIP image embedding of G(z_C), plus a text direction when editing).

    Returns:
      w: [batch, N, n_latent, style_dim].
    """
    return self.styled_latents(z_t, content, style[None])[0]

  def styled_latents(self, z_t, content, styles):
    """As `latents` for several style tokens per video, sharing the dynamics tokens and their self-attention.

    styles: [num_styles, batch, embed] -> w: [num_styles, batch, N, n_latent, style_dim].
    """
    tokens = self.dynamics.tokens(z_t)
    batch, frames = tokens.shape[:2]
    per_frame = lambda x, axis: jnp.repeat(x, frames, axis=axis)
    conditions = self.modulation(per_frame(styles, 1), tokens.reshape((batch * frames,) + tokens.shape[2:]))
    num_styles = styles.shape[0]
    content_flat = jnp.broadcast_to(per_frame(content, 0), (num_styles, batch * frames) + content.shape[1:])
    content_flat = content_flat.reshape((-1,) + content.shape[1:])
    delta = self.mapper(content_flat, conditions.reshape((-1,) + conditions.shape[2:]))
    w = content_flat + self.delta_scale * delta if self.residual else delta
    return w.reshape((num_styles, batch, frames) + content.shape[1:])

  def __call__(self, frames, times, mask, query_times, content, styles: Sequence):
    """The training path: one ODE solve and one dynamics self-attention shared by several style tokens.

    styles: the style tokens [batch, embed] of each branch (reconstruction, edited).
    Returns (w [len(styles), batch, N, n_latent, style_dim], z0, solver stats).
    """
    z0 = self.encode(frames, times, mask)
    z_t, stats = self.solve(z0, query_times)
    return self.styled_latents(z_t, content, jnp.stack(styles)), z0, stats


def build(config) -> VidStyleODE:
  return VidStyleODE(
      dynamics=dynamics_lib.DynamicsEncoder(
          **fields_of(dynamics_lib.DynamicsEncoder, config.dynamics, token_dim=config.modulation.width)
      ),
      modulation=modulation_lib.ModulationNetwork(**fields_of(modulation_lib.ModulationNetwork, config.modulation)),
      mapper=mapper_lib.StyleMapper(**fields_of(mapper_lib.StyleMapper, config.mapper)),
      delta_scale=config.mapper.delta_scale,
      residual=config.mapper.residual,
  )
