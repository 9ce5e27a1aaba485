"""The trainable VidStyleODE model: dynamics encoder, modulation network and W+ mapper.

For a video and any query times it produces W+ latents w_t = z_C + delta_scale * Δ_t, where z_C is the content
code (mean W+ inversion of the clip), Δ_t comes from the mapper conditioned on the style token and the dynamics
tokens at time t. The frozen generator renders w_t (see models/frozen.py); this module never sees images at the
generator's resolution.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from vidstyleode_jax.models import dynamics as dynamics_lib
from vidstyleode_jax.models import mapper as mapper_lib
from vidstyleode_jax.models import modulation as modulation_lib
from vidstyleode_jax.models.config_fields import fields_of


class VidStyleODE(nn.Module):
  """Call methods through `apply(params, ..., method=VidStyleODE.<name>)`; `__call__` is the training path."""

  dynamics: dynamics_lib.DynamicsEncoder
  modulation: modulation_lib.ModulationNetwork
  mapper: mapper_lib.StyleMapper
  delta_scale: float = 0.01

  def encode(self, frames, times, mask):
    """frames: [batch, T, h, w, 3] in [0, 1] at the dynamics resolution; times: [T]; mask: [batch, T] -> z0."""
    return self.dynamics.encode(frames, times, mask)

  def solve(self, z0, query_times):
    """z0: [batch, h', w', C]; query_times: [N] increasing -> (z_t [batch, N, h', w', C], solver stats)."""
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
    tokens = self.dynamics.tokens(z_t)
    batch, frames = tokens.shape[:2]
    flat = lambda x: jnp.repeat(x, frames, axis=0)
    conditions = self.modulation(flat(style), tokens.reshape((batch * frames,) + tokens.shape[2:]))
    content_flat = flat(content)
    w = content_flat + self.delta_scale * self.mapper(content_flat, conditions)
    return w.reshape((batch, frames) + content.shape[1:])

  def __call__(self, frames, times, mask, query_times, content, styles: Sequence):
    """The training path: one ODE solve shared by several style tokens (reconstruction and edited branches).

    Returns (w [len(styles), batch, N, n_latent, style_dim], z0, solver stats).
    """
    z0 = self.encode(frames, times, mask)
    z_t, stats = self.solve(z0, query_times)
    num_styles, batch = len(styles), content.shape[0]
    tile = lambda x: jnp.concatenate([x] * num_styles, axis=0)
    w = self.latents(tile(z_t), tile(content), jnp.concatenate(styles, axis=0))
    return w.reshape((num_styles, batch) + w.shape[1:]), z0, stats


def build(config) -> VidStyleODE:
  return VidStyleODE(
      dynamics=dynamics_lib.DynamicsEncoder(
          **fields_of(dynamics_lib.DynamicsEncoder, config.dynamics, token_dim=config.modulation.width)
      ),
      modulation=modulation_lib.ModulationNetwork(**fields_of(modulation_lib.ModulationNetwork, config.modulation)),
      mapper=mapper_lib.StyleMapper(**fields_of(mapper_lib.StyleMapper, config.mapper)),
      delta_scale=config.mapper.delta_scale,
  )
