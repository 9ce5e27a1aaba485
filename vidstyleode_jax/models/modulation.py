"""Modulation network: self-attention over dynamics tokens, then cross-attention from the style token.

docs/model.md §7. The style token s (CLIP image embedding of G(z_C), plus a text direction when editing) queries
the self-attended dynamics tokens through two parallel cross-attention branches (coarse and medium); the fine branch
sees the style token alone. Each branch ends in its own LayerNorm and bias-free projection, giving one conditioning
vector per W+ group.

Two ablations of paper Table 4 (docs/model.md §21.3): `self_attention=False` drops the self-attention blocks (the
context is the positioned dynamics tokens), and `fusion="concat"` replaces each cross-attention branch by one dense
layer over the concatenation of the style token and the flattened context.

The self-attention does not depend on the style, so several style tokens per video (the reconstruction and the
edited branch of training) share one pass over the dynamics tokens. The cross-attention has one query token, so its
context LayerNorm and its key and value projections are applied on the query side (`SingleQueryAttention`): the
same attention, with the 48 dynamics tokens normalised once and no longer projected once per block and per style.
The self-attention blocks run as one scan over their parameters, stored stacked (`self_stack`, models/block_scan.py);
on XLA:CPU the unrolled stack's backward pass is about twice as slow. Each branch's cross-attention blocks run as one
scan too (`cross_0_stack`, `cross_1_stack`), for compile time (docs/performance.md §2).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax.models import block_scan

NUM_GROUPS = 3  # coarse, medium, fine
FUSIONS = ("cross_attention", "concat")
LAYER_NORM_EPS = 1e-5

PAPER_INIT_STD = 0.02  # std of the normal init of every attention, MLP and head kernel in the original


def _layer_norm(name=None):
  return nn.LayerNorm(epsilon=LAYER_NORM_EPS, use_fast_variance=False, name=name)


def normalize(x):
  """LayerNorm over the last axis without scale and bias: [..., width] -> [..., width]."""
  return nn.LayerNorm(epsilon=LAYER_NORM_EPS, use_fast_variance=False, use_scale=False, use_bias=False)(x)


def attention_params(module: nn.Module, width: int, num_heads: int,
                     init_std: float) -> dict[str, dict[str, jax.Array]]:
  """The q, k, v and output projections of `module`'s attention, stored as flax.linen.DenseGeneral stores them.

  Returns {name: {"kernel", "bias"}} for query, key, value (kernel [width, heads, head_dim], bias [heads, head_dim])
  and out (kernel [heads, head_dim, width], bias [width]); kernels N(0, init_std**2), biases 0.
  """
  if width % num_heads:
    raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
  head_dim = width // num_heads

  def projection(name, in_shape, out_shape):
    kernel_init = nn.initializers.normal(init_std)
    init = lambda key: {"kernel": kernel_init(key, in_shape + out_shape), "bias": jnp.zeros(out_shape)}
    return module.param(name, init)

  params = {name: projection(name, (width,), (num_heads, head_dim)) for name in ("query", "key", "value")}
  params["out"] = projection("out", (num_heads, head_dim), (width,))
  return params


class SelfAttention(nn.Module):
  """Unmasked multi-head self-attention with separate q, k, v and output projections."""

  num_heads: int
  init_std: float

  @nn.compact
  def __call__(self, x):
    """x: [batch, tokens, width] -> [batch, tokens, width]."""
    p = attention_params(self, x.shape[-1], self.num_heads, self.init_std)
    project = lambda name: jnp.einsum("btc,chd->bthd", x, p[name]["kernel"]) + p[name]["bias"]
    attended = jax.nn.dot_product_attention(project("query"), project("key"), project("value"))
    return jnp.einsum("bthd,hdc->btc", attended, p["out"]["kernel"]) + p["out"]["bias"]


class SingleQueryAttention(nn.Module):
  """Multi-head attention of one query token per row to a context shared by the leading axes of the queries.

  The context is an affine map of a normalised one, y = y_hat * scale + bias (a LayerNorm's output, given as its
  parts). Same parameters and result as projecting y to keys and values, with both projections moved onto the
  query side: q . (y W_k + b_k) = (W_k q * scale) . y_hat + a term equal for every key, which cancels in the
  softmax; and since the softmax weights a_t sum to 1, sum_t a_t (y_t W_v + b_v) = ((sum_t a_t y_hat_t) * scale +
  bias) W_v + b_v.
  """

  num_heads: int
  init_std: float

  @nn.compact
  def __call__(self, queries, normalized_context, scale, bias):
    """queries: [..., batch, width]; normalized_context: [batch, tokens, width]; scale, bias: [width].

    Returns [..., batch, width].
    """
    p = attention_params(self, queries.shape[-1], self.num_heads, self.init_std)
    q = jnp.einsum("...bc,chd->...bhd", queries, p["query"]["kernel"]) + p["query"]["bias"]
    q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    query_keys = jnp.einsum("...bhd,chd->...bhc", q, p["key"]["kernel"]) * scale
    weights = jax.nn.softmax(jnp.einsum("...bhc,btc->...bht", query_keys, normalized_context), axis=-1)
    context = jnp.einsum("...bht,btc->...bhc", weights, normalized_context) * scale + bias
    values = jnp.einsum("...bhc,chd->...bhd", context, p["value"]["kernel"]) + p["value"]["bias"]
    return jnp.einsum("...bhd,hdc->...bc", values, p["out"]["kernel"]) + p["out"]["bias"]


class Mlp(nn.Module):
  """Linear -> exact GELU -> Linear back to the input width."""

  hidden_dim: int
  init_std: float

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    kernel_init = nn.initializers.normal(self.init_std)
    x = nn.Dense(self.hidden_dim, kernel_init=kernel_init, name="fc1")(x)
    x = nn.gelu(x, approximate=False)
    return nn.Dense(width, kernel_init=kernel_init, name="fc2")(x)


class SelfAttentionBlock(nn.Module):
  """Pre-LayerNorm transformer block without a causal mask."""

  num_heads: int
  mlp_dim: int
  init_std: float

  @nn.compact
  def __call__(self, x):
    x = x + SelfAttention(self.num_heads, self.init_std, name="attn")(_layer_norm("ln_1")(x))
    return x + Mlp(self.mlp_dim, self.init_std, name="mlp")(_layer_norm("ln_2")(x))


class CrossAttentionBlock(nn.Module):
  """The query token x attends to the fixed context ln_y(y); y is not updated.

  The block takes y normalised without affine (`normalize`, computed once for all blocks) and applies its ln_y
  scale and bias inside the attention (see SingleQueryAttention); ln_y's parameters are those of a LayerNorm.
  """

  num_heads: int
  mlp_dim: int
  init_std: float

  @nn.compact
  def __call__(self, x, normalized_y):
    """x: [..., batch, width], one token per row; normalized_y: [batch, tokens, width] -> [..., batch, width]."""
    width = x.shape[-1]
    ln_y = self.param("ln_y", lambda key: {"scale": jnp.ones((width,)), "bias": jnp.zeros((width,))})
    attended = SingleQueryAttention(self.num_heads, self.init_std, name="attn")(
        _layer_norm("ln_x")(x), normalized_y, ln_y["scale"], ln_y["bias"]
    )
    x = x + attended
    return x + Mlp(self.mlp_dim, self.init_std, name="mlp")(_layer_norm("ln_2")(x))


class ModulationNetwork(nn.Module):
  """Dynamics tokens and style tokens -> one conditioning vector per W+ group and per style.

  Attributes:
    width: token width (512).
    num_heads: attention heads (8).
    num_self_layers: self-attention blocks over the dynamics tokens (6).
    num_cross_layers: cross-attention blocks in each of the coarse and medium branches (8).
    self_mlp_dim: hidden width of the self-attention MLPs (4 * width).
    cross_mlp_dim: hidden width of the cross-attention MLPs (2 * width).
    num_dynamics_tokens: size of the dynamics positional table; must be >= the number of tokens given.
    self_attention: whether the dynamics tokens go through the self-attention blocks.
    fusion: how the coarse and medium branches combine the style token with the context: "cross_attention", or
      "concat" (one dense layer over [style, context flattened], sized at init by the number of tokens).
    init_std: std of the normal init of every attention, MLP, concat and head kernel (PAPER_INIT_STD; the demo
      scales it with the width, docs/model.md §21.9).
  """

  width: int = 512
  num_heads: int = 8
  num_self_layers: int = 6
  num_cross_layers: int = 8
  self_mlp_dim: int = 2048
  cross_mlp_dim: int = 1024
  num_dynamics_tokens: int = 48
  self_attention: bool = True
  fusion: str = "cross_attention"
  init_std: float = PAPER_INIT_STD

  def attend_dynamics(self, dynamics_tokens):
    """dynamics_tokens: [batch, tokens, width] -> the self-attended context [batch, tokens, width]."""
    num_tokens = dynamics_tokens.shape[1]
    if num_tokens > self.num_dynamics_tokens:
      raise ValueError(f"{num_tokens} dynamics tokens exceed num_dynamics_tokens={self.num_dynamics_tokens}")
    dynamics_pos = self.param("dynamics_pos_embedding", nn.initializers.zeros,
                              (1, self.num_dynamics_tokens, self.width))
    y = dynamics_tokens + dynamics_pos[:, :num_tokens]
    if not self.self_attention:
      return y
    block = SelfAttentionBlock(self.num_heads, self.self_mlp_dim, self.init_std, parent=None)
    return block_scan.scan_stacked_blocks(self, block, "self", self.num_self_layers, y)[0]

  def condition(self, styles, context):
    """styles: [styles, batch, width]; context: [batch, tokens, width] -> [styles, batch, 3, width]."""
    if self.fusion not in FUSIONS:
      raise ValueError(f"modulation fusion {self.fusion!r} must be one of {FUSIONS}")
    style_pos = self.param("style_pos_embedding", nn.initializers.zeros, (1, 1, self.width))
    query = styles + style_pos[0]
    normalized = normalize(context)
    branches = []
    for group in range(NUM_GROUPS):
      x = query
      if group < 2 and self.fusion == "concat":
        x = self.concat_fusion(x, context, name=f"concat_{group}")
      elif group < 2:
        block = CrossAttentionBlock(self.num_heads, self.cross_mlp_dim, self.init_std, parent=None)
        x = block_scan.scan_stacked_blocks(self, block, f"cross_{group}", self.num_cross_layers, x, normalized)[0]
      x = _layer_norm(f"head_ln_{group}")(x)
      kernel_init = nn.initializers.normal(self.init_std)
      branches.append(nn.Dense(self.width, use_bias=False, kernel_init=kernel_init, name=f"head_{group}")(x))
    return jnp.stack(branches, axis=-2)

  def concat_fusion(self, query, context, name):
    """query: [styles, batch, width]; context: [batch, tokens, width] -> Dense([query, context flattened]) [styles,
    batch, width]: (1 + tokens) * width inputs, width outputs, with bias."""
    flat = jnp.broadcast_to(context.reshape(context.shape[0], -1), query.shape[:-1] + (context[0].size,))
    dense = nn.Dense(self.width, kernel_init=nn.initializers.normal(self.init_std), name=name)
    return dense(jnp.concatenate([query, flat], axis=-1))

  @nn.compact
  def __call__(self, styles, dynamics_tokens):
    """styles: [styles, batch, width]; dynamics_tokens: [batch, tokens, width] -> [styles, batch, 3, width].

    Row b of every style attends to the dynamics tokens of row b; the groups are (coarse, medium, fine).
    """
    return self.condition(styles, self.attend_dynamics(dynamics_tokens))
