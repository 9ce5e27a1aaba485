"""W+ style mapper: modulates the content code, group by group, with the conditioning vectors.

docs/model.md §8. The content code [batch, layers, width] is split into coarse / medium / fine groups of W+ rows;
each group is pixel-normalised over its rows and passed through a stack of modulation modules conditioned on that
group's vector. The output is the residual Δ, added to the content code as w = z_C + delta_scale * Δ.

A group's modules run as one scan over their parameters, stored stacked (`group_<g>_stack`, models/block_scan.py):
one traced copy per group instead of one per module (docs/performance.md §2).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax.models import block_scan
from vidstyleode_jax.models.layers import torch_dense

LEAKY_SLOPE = 0.01
LAYER_NORM_EPS = 1e-5
OUTPUT_ACTIVATIONS = ("leaky_relu", "linear")


def pixel_norm_over_layers(x):
  """x: [batch, layers, width]; normalise each channel by its RMS over the W+ rows (the mapper's quirk)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True) + 1e-8)


class ModulationModule(nn.Module):
  """x <- lrelu((1 + gamma(c)) * LN(W x) + beta(c)), LN over the whole [layers, width] slab without affine."""

  width: int

  def _affine_mlp(self, c, name):
    c = torch_dense(self.width, c.shape[-1], name=f"{name}_fc1")(c)
    c = nn.LayerNorm(epsilon=LAYER_NORM_EPS, use_fast_variance=False, name=f"{name}_ln")(c)
    c = nn.leaky_relu(c, LEAKY_SLOPE)
    return torch_dense(self.width, self.width, name=f"{name}_fc2")(c)

  @nn.compact
  def __call__(self, x, condition, activate=True):
    """x: [batch, layers, width]; condition: [batch, width]; activate: a bool scalar, False leaves the leaky ReLU out
    (see StyleMapper.output_activation)."""
    x = torch_dense(self.width, x.shape[-1], name="fc")(x)
    x = nn.LayerNorm(
        epsilon=LAYER_NORM_EPS, use_bias=False, use_scale=False, reduction_axes=(-2, -1), use_fast_variance=False
    )(x)
    gamma = self._affine_mlp(condition, "gamma")[:, None, :]
    beta = self._affine_mlp(condition, "beta")[:, None, :]
    x = x * (1.0 + gamma) + beta
    return jnp.where(activate, nn.leaky_relu(x, LEAKY_SLOPE), x)



class StyleMapper(nn.Module):
  """Content code and per-group conditioning vectors -> residual Δ of the same shape as the content code.

  Attributes:
    group_sizes: W+ rows per group (coarse, medium, fine), e.g. (4, 6, 8) for 18 rows.
    group_depths: modulation modules per group, e.g. (7, 5, 5).
    output_activation: of each group's last module: "leaky_relu" as in the paper, which leaves Δ almost
      non-negative (slope 0.01 below zero), or "linear" (docs/model.md §21.9).
  """

  group_sizes: Sequence[int] = (4, 6, 8)
  group_depths: Sequence[int] = (7, 5, 5)
  output_activation: str = "leaky_relu"

  @nn.compact
  def __call__(self, content, conditions):
    """content: [batch, layers, width]; conditions: [batch, 3, width] -> delta: [batch, layers, width]."""
    if sum(self.group_sizes) != content.shape[1]:
      raise ValueError(f"mapper group_sizes {tuple(self.group_sizes)} do not sum to {content.shape[1]} W+ layers")
    width = content.shape[-1]
    outputs, start = [], 0
    for group, (size, depth) in enumerate(zip(self.group_sizes, self.group_depths)):
      x = pixel_norm_over_layers(content[:, start:start + size])
      activate = jnp.arange(depth) < depth - 1 if self.output_activation == "linear" else jnp.ones(depth, bool)
      x = block_scan.scan_stacked_blocks(self, ModulationModule(width, parent=None), f"group_{group}", depth, x,
                                         conditions[:, group], per_block=(activate,))[0]
      outputs.append(x)
      start += size
    return jnp.concatenate(outputs, axis=1)
