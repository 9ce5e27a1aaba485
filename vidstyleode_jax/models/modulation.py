"""Modulation network: self-attention over dynamics tokens, then cross-attention from the style token.

docs/model.md §7. The style token s (CLIP image embedding of G(z_C), plus a text direction when editing) queries
the self-attended dynamics tokens through two parallel cross-attention branches (coarse and medium); the fine branch
sees the style token alone. Each branch ends in its own LayerNorm and bias-free projection, giving one conditioning
vector per W+ group.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_GROUPS = 3  # coarse, medium, fine
LAYER_NORM_EPS = 1e-5

_dense_init = nn.initializers.normal(0.02)


def _layer_norm(name=None):
  return nn.LayerNorm(epsilon=LAYER_NORM_EPS, use_fast_variance=False, name=name)


class MultiHeadAttention(nn.Module):
  """Unmasked multi-head attention with separate q, k, v and output projections."""

  num_heads: int

  @nn.compact
  def __call__(self, queries, keys_values):
    width = queries.shape[-1]
    head_dim = width // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head_dim), kernel_init=_dense_init, name=name)
    q = dense("query")(queries)
    k = dense("key")(keys_values)
    v = dense("value")(keys_values)
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(q.dtype), axis=-1)
    attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return nn.DenseGeneral(width, axis=(-2, -1), kernel_init=_dense_init, name="out")(attended)


class Mlp(nn.Module):
  """Linear -> exact GELU -> Linear back to the input width."""

  hidden_dim: int

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    x = nn.Dense(self.hidden_dim, kernel_init=_dense_init, name="fc1")(x)
    x = nn.gelu(x, approximate=False)
    return nn.Dense(width, kernel_init=_dense_init, name="fc2")(x)


class SelfAttentionBlock(nn.Module):
  """Pre-LayerNorm transformer block without a causal mask."""

  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x):
    h = _layer_norm("ln_1")(x)
    x = x + MultiHeadAttention(self.num_heads, name="attn")(h, h)
    return x + Mlp(self.mlp_dim, name="mlp")(_layer_norm("ln_2")(x))


class CrossAttentionBlock(nn.Module):
  """The query tokens x attend to the fixed context y; y is not updated."""

  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x, y):
    x = x + MultiHeadAttention(self.num_heads, name="attn")(_layer_norm("ln_x")(x), _layer_norm("ln_y")(y))
    return x + Mlp(self.mlp_dim, name="mlp")(_layer_norm("ln_2")(x))


class ModulationNetwork(nn.Module):
  """Dynamics tokens and a style token -> one conditioning vector per W+ group.

  Attributes:
    width: token width (512).
    num_heads: attention heads (8).
    num_self_layers: self-attention blocks over the dynamics tokens (6).
    num_cross_layers: cross-attention blocks in each of the coarse and medium branches (8).
    self_mlp_dim: hidden width of the self-attention MLPs (4 * width).
    cross_mlp_dim: hidden width of the cross-attention MLPs (2 * width).
    num_dynamics_tokens: size of the dynamics positional table; must be >= the number of tokens given.
  """

  width: int = 512
  num_heads: int = 8
  num_self_layers: int = 6
  num_cross_layers: int = 8
  self_mlp_dim: int = 2048
  cross_mlp_dim: int = 1024
  num_dynamics_tokens: int = 48

  @nn.compact
  def __call__(self, style, dynamics_tokens):
    """style: [batch, width]; dynamics_tokens: [batch, tokens, width] -> [batch, 3, width] (coarse, medium, fine)."""
    num_tokens = dynamics_tokens.shape[1]
    if num_tokens > self.num_dynamics_tokens:
      raise ValueError(f"{num_tokens} dynamics tokens exceed num_dynamics_tokens={self.num_dynamics_tokens}")
    style_pos = self.param("style_pos_embedding", nn.initializers.zeros, (1, 1, self.width))
    dynamics_pos = self.param("dynamics_pos_embedding", nn.initializers.zeros, (1, self.num_dynamics_tokens, self.width))
    y = dynamics_tokens + dynamics_pos[:, :num_tokens]
    for i in range(self.num_self_layers):
      y = SelfAttentionBlock(self.num_heads, self.self_mlp_dim, name=f"self_{i}")(y)

    query = style[:, None, :] + style_pos
    branches = []
    for group in range(NUM_GROUPS):
      x = query
      if group < 2:
        for i in range(self.num_cross_layers):
          x = CrossAttentionBlock(self.num_heads, self.cross_mlp_dim, name=f"cross_{group}_{i}")(x, y)
      x = _layer_norm(f"head_ln_{group}")(x[:, 0])
      branches.append(nn.Dense(self.width, use_bias=False, kernel_init=_dense_init, name=f"head_{group}")(x))
    return jnp.stack(branches, axis=1)
