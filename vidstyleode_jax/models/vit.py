"""Pre-LN transformer blocks and one Vision Transformer for CLIP's image tower and for DINO.

The blocks run as one scan over their stacked parameters (models/block_scan.py); the parameters keep the names below.

Parameter names, with the checkpoint names they come from (OpenAI CLIP `visual.` / DINO):
  patch_embed            conv1 / patch_embed.proj (kernel HWIO)
  cls_token              class_embedding / cls_token
  pos_embed              positional_embedding / pos_embed, [1 + grid*grid, width], CLS row first
  ln_pre                 ln_pre (CLIP only)
  blocks_{i}/ln_1        resblocks.i.ln_1 / blocks.i.norm1
  blocks_{i}/attn/{query,key,value}
                         row thirds of resblocks.i.attn.in_proj_* / blocks.i.attn.qkv.*
  blocks_{i}/attn/out    resblocks.i.attn.out_proj / blocks.i.attn.proj
  blocks_{i}/ln_2        resblocks.i.ln_2 / blocks.i.norm2
  blocks_{i}/mlp/fc1     resblocks.i.mlp.c_fc / blocks.i.mlp.fc1
  blocks_{i}/mlp/fc2     resblocks.i.mlp.c_proj / blocks.i.mlp.fc2
  ln_post                ln_post / norm
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax import image_ops
from vidstyleode_jax.models import block_scan

TRANSFORMER_INIT = nn.initializers.normal(stddev=0.02)


def quick_gelu(x: jax.Array) -> jax.Array:
  """CLIP's x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def exact_gelu(x: jax.Array) -> jax.Array:
  """The erf GELU of DINO and HF ViT (Flax's default is the tanh approximation)."""
  return jax.nn.gelu(x, approximate=False)


ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": exact_gelu}


def layer_norm(epsilon: float, name: str) -> nn.LayerNorm:
  """PyTorch LayerNorm numerics: explicit eps, variance as E[(x - mean)^2]."""
  return nn.LayerNorm(epsilon=epsilon, use_fast_variance=False, name=name)


class MultiHeadAttention(nn.Module):
  """Self-attention with separate q/k/v/out projections, scale 1/sqrt(head_dim).

  Returns the attention output and the keys, [batch, tokens, width] with heads concatenated per token (head h in
  columns h*head_dim ... (h+1)*head_dim), which is what DINO's structure descriptor reads.
  """

  num_heads: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """x: [batch, tokens, width]; mask: optional [tokens, tokens] bool, True where attention is allowed."""
    batch, tokens, width = x.shape
    if width % self.num_heads:
      raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}")
    head_dim = width // self.num_heads
    dense = lambda name: nn.Dense(width, kernel_init=TRANSFORMER_INIT, name=name)
    keys = dense("key")(x)
    split = lambda y: y.reshape(batch, tokens, self.num_heads, head_dim)
    query = split(dense("query")(x)) / math.sqrt(head_dim)
    logits = jnp.einsum("bthd,bshd->bhts", query, split(keys))
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    attended = jnp.einsum("bhts,bshd->bthd", weights, split(dense("value")(x)))
    return dense("out")(attended.reshape(batch, tokens, width)), keys


class Mlp(nn.Module):
  """fc1 -> activation -> fc2."""

  hidden_dim: int
  activation: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
    hidden = nn.Dense(self.hidden_dim, kernel_init=TRANSFORMER_INIT, name="fc1")(x)
    hidden = ACTIVATIONS[self.activation](hidden)
    return nn.Dense(x.shape[-1], kernel_init=TRANSFORMER_INIT, name="fc2")(hidden)


class EncoderBlock(nn.Module):
  """x += attn(ln_1(x)); x += mlp(ln_2(x)). Returns the block output and the attention keys."""

  num_heads: int
  mlp_dim: int
  layer_norm_eps: float
  activation: str

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """x: [batch, tokens, width] -> ([batch, tokens, width], keys [batch, tokens, width])."""
    attended, keys = MultiHeadAttention(self.num_heads, name="attn")(
        layer_norm(self.layer_norm_eps, "ln_1")(x), mask
    )
    x = x + attended
    x = x + Mlp(self.mlp_dim, self.activation, name="mlp")(layer_norm(self.layer_norm_eps, "ln_2")(x))
    return x, keys


def dino_position_table(pos_embed: jax.Array, pretrained_grid: int, grid: tuple[int, int]) -> jax.Array:
  """DINO's `interpolate_pos_encoding` (docs/weight_formats.md §5.3).

  The patch rows, seen as a [pretrained_grid, pretrained_grid] image, are resized by PyTorch bicubic (A = -0.75)
  with DINO's scale factor (n + 0.1) / pretrained_grid, so output index d reads source coordinate
  (d + 0.5) * pretrained_grid / (n + 0.1) - 0.5. The CLS row is kept.

  Args:
    pos_embed: [1 + pretrained_grid**2, width], CLS row first.
    pretrained_grid: side of the square table the weights were trained with.
    grid: (rows, cols) of the input's patch grid.

  Returns:
    [1 + rows * cols, width].
  """
  rows, cols = grid
  width = pos_embed.shape[-1]
  table = pos_embed[1:].reshape(pretrained_grid, pretrained_grid, width)
  row_matrix = image_ops.bicubic_resize_matrix(pretrained_grid, rows, pretrained_grid / (rows + 0.1))
  col_matrix = image_ops.bicubic_resize_matrix(pretrained_grid, cols, pretrained_grid / (cols + 0.1))
  table = jnp.einsum("hi,wj,ijc->hwc", row_matrix, col_matrix, table, precision=jax.lax.Precision.HIGHEST)
  return jnp.concatenate([pos_embed[:1], table.reshape(rows * cols, width)], axis=0)


class VisionTransformer(nn.Module):
  """ViT with CLS token, learned positions, pre-LN blocks and a final LayerNorm.

  Attributes:
    patch_size: side of a patch; trailing pixels that do not fill a patch are dropped.
    width, depth, num_heads, mlp_dim: transformer sizes.
    layer_norm_eps: 1e-5 for CLIP, 1e-6 for DINO.
    activation: 'quick_gelu' (CLIP) or 'gelu' (exact erf, DINO).
    patch_bias: whether the patch conv has a bias (DINO) or not (CLIP).
    pre_norm: apply `ln_pre` after adding positions (CLIP).
    pretrained_grid: side of the square position table the weights were trained with.
    pos_interpolation: 'none' (the input must give a pretrained_grid x pretrained_grid grid) or 'dino'
      (docs/weight_formats.md §5.3, used unless the image is square with the pretrained patch count, as DINO does).
  """

  patch_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  layer_norm_eps: float
  activation: str
  patch_bias: bool
  pre_norm: bool
  pretrained_grid: int
  pos_interpolation: str = "none"

  def position_table(self, pos_embed: jax.Array, image_size: tuple[int, int]) -> jax.Array:
    """The [1 + rows * cols, width] position table for an image of `image_size` (height, width) pixels."""
    grid = (image_size[0] // self.patch_size, image_size[1] // self.patch_size)
    native = grid == (self.pretrained_grid, self.pretrained_grid)
    if self.pos_interpolation == "none":
      if not native:
        raise ValueError(
            f"image {image_size[0]}x{image_size[1]} gives a {grid[0]}x{grid[1]} patch grid, but pos_interpolation="
            f"'none' needs the pretrained {self.pretrained_grid}x{self.pretrained_grid}"
        )
      return pos_embed
    if self.pos_interpolation == "dino":
      if grid[0] * grid[1] == self.pretrained_grid**2 and image_size[0] == image_size[1]:
        return pos_embed
      return dino_position_table(pos_embed, self.pretrained_grid, grid)
    raise ValueError(f"pos_interpolation must be 'none' or 'dino', got {self.pos_interpolation!r}")

  @nn.compact
  def __call__(self, images: jax.Array, key_layer: int | None = None) -> dict[str, jax.Array]:
    """Runs the ViT.

    Args:
      images: [batch, height, width, 3], already normalised.
      key_layer: if given, also return the attention keys of this block.

    Returns:
      tokens: [batch, tokens, width], output of the last block, before the final norm; tokens = 1 + rows * cols.
      block_outputs: [depth, batch, tokens, width], each block's output before the final norm; the CLS of block l is
        block_outputs[l][:, 0].
      normed: [batch, tokens, width], `ln_post(tokens)`.
      keys: [batch, tokens, width], ln_1(x_l) @ W_k + b_k of block key_layer (only when key_layer is given).
    """
    patches = nn.Conv(
        self.width,
        (self.patch_size, self.patch_size),
        strides=(self.patch_size, self.patch_size),
        padding="VALID",
        use_bias=self.patch_bias,
        kernel_init=TRANSFORMER_INIT,
        name="patch_embed",
    )(images)
    batch = patches.shape[0]
    x = patches.reshape(batch, -1, self.width)
    cls_token = self.param("cls_token", TRANSFORMER_INIT, (self.width,))
    x = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, self.width)), x], axis=1)
    pos_embed = self.param("pos_embed", TRANSFORMER_INIT, (1 + self.pretrained_grid**2, self.width))
    x = x + self.position_table(pos_embed, images.shape[1:3])
    if self.pre_norm:
      x = layer_norm(self.layer_norm_eps, "ln_pre")(x)

    if key_layer is not None and not 0 <= key_layer < self.depth:
      raise ValueError(f"key_layer {key_layer} is outside the {self.depth} blocks")
    block = EncoderBlock(self.num_heads, self.mlp_dim, self.layer_norm_eps, self.activation, parent=None)
    x, (block_outputs, keys) = block_scan.scan_blocks(self, block, [f"blocks_{i}" for i in range(self.depth)], x)
    outputs = {"tokens": x, "block_outputs": block_outputs, "normed": layer_norm(self.layer_norm_eps, "ln_post")(x)}
    if key_layer is not None:
      outputs["keys"] = keys[key_layer]
    return outputs
