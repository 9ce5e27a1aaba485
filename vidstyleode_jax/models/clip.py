"""CLIP image and text towers (OpenAI numerics) and CLIP's image preprocessing.

Parameter tree, with the OpenAI checkpoint names it comes from:
  visual/...                  visual.* as listed in vit.py (pos_interpolation 'none', no patch bias, ln_pre)
  visual_projection/kernel    visual.proj, [vision_width, embed_dim], no bias
  text/token_embedding        token_embedding
  text/pos_embed              positional_embedding, [context_length, text_width]
  text/blocks_{i}/...         transformer.resblocks.i.* (named as in vit.py, run as one scan as there)
  text/ln_final               ln_final
  text_projection/kernel      text_projection, [text_width, embed_dim], no bias
`logit_scale` is not used by VidStyleODE and has no parameter here.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax import image_ops
from vidstyleode_jax.models import block_scan
from vidstyleode_jax.models import vit

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_LAYER_NORM_EPS = 1e-5


def clip_preprocess(images: jax.Array, image_size: int) -> jax.Array:
  """VidStyleODE's tensor version of OpenAI's CLIP transform (docs/model.md §6.1).

  Args:
    images: [batch, height, width, 3] float in [-1, 1].
    image_size: CLIP input side, 224 for ViT-B/32.

  Returns:
    [batch, image_size, image_size, 3]: (x + 1) / 2, short side resized to image_size (bicubic, antialiased),
    centre crop, CLIP mean/std.
  """
  images = (images + 1.0) / 2.0
  height, width = image_ops.short_side_size(images.shape[1], images.shape[2], image_size)
  images = image_ops.resize_antialiased(images, height, width, "bicubic")
  images = image_ops.center_crop(images, image_size)
  return (images - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)


class TextTransformer(nn.Module):
  """CLIP's causal text transformer; returns ln_final of every position, [batch, length, width]."""

  vocab_size: int
  context_length: int
  width: int
  depth: int
  num_heads: int

  @nn.compact
  def __call__(self, token_ids: jax.Array) -> jax.Array:
    """token_ids: [batch, length] int, length <= context_length."""
    length = token_ids.shape[1]
    if length > self.context_length:
      raise ValueError(f"token_ids have length {length}, more than context_length {self.context_length}")
    x = nn.Embed(self.vocab_size, self.width, embedding_init=vit.TRANSFORMER_INIT, name="token_embedding")(token_ids)
    pos_embed = self.param("pos_embed", vit.TRANSFORMER_INIT, (self.context_length, self.width))
    x = x + pos_embed[:length]
    causal = jnp.tril(jnp.ones((length, length), bool))
    block = vit.EncoderBlock(self.num_heads, 4 * self.width, CLIP_LAYER_NORM_EPS, "quick_gelu", parent=None)
    x, _ = block_scan.scan_blocks(self, block, [f"blocks_{i}" for i in range(self.depth)], x, causal)
    return vit.layer_norm(CLIP_LAYER_NORM_EPS, "ln_final")(x)


class CLIP(nn.Module):
  """OpenAI CLIP with a ViT image tower. Heads are fields (real CLIP uses width // 64 in both towers).

  Use `encode_image` / `encode_text` through `apply(..., method=...)`; `__call__` runs both (for `init`).
  """

  embed_dim: int
  image_size: int
  vision_patch_size: int
  vision_width: int
  vision_depth: int
  vision_heads: int
  vocab_size: int
  context_length: int
  text_width: int
  text_depth: int
  text_heads: int

  def setup(self):
    grid = self.image_size // self.vision_patch_size
    self.visual = vit.VisionTransformer(
        patch_size=self.vision_patch_size,
        width=self.vision_width,
        depth=self.vision_depth,
        num_heads=self.vision_heads,
        mlp_dim=4 * self.vision_width,
        layer_norm_eps=CLIP_LAYER_NORM_EPS,
        activation="quick_gelu",
        patch_bias=False,
        pre_norm=True,
        pretrained_grid=grid,
        pos_interpolation="none",
    )
    self.visual_projection = nn.Dense(self.embed_dim, use_bias=False, kernel_init=vit.TRANSFORMER_INIT)
    self.text = TextTransformer(
        self.vocab_size, self.context_length, self.text_width, self.text_depth, self.text_heads
    )
    self.text_projection = nn.Dense(self.embed_dim, use_bias=False, kernel_init=vit.TRANSFORMER_INIT)

  def encode_image(self, images: jax.Array) -> jax.Array:
    """images: [batch, image_size, image_size, 3] from `clip_preprocess` -> [batch, embed_dim], not normalised."""
    return self.visual_projection(self.visual(images)["normed"][:, 0])

  def encode_text(self, token_ids: jax.Array) -> jax.Array:
    """token_ids: [batch, length] int -> [batch, embed_dim], not normalised.

    Pools the position of argmax(token_ids): EOT is the largest id, and jnp.argmax returns the first maximum, so
    zero padding (OpenAI) and EOT padding (Hugging Face) both pool the first EOT.
    """
    hidden = self.text(token_ids)
    pooled = jnp.take_along_axis(hidden, jnp.argmax(token_ids, axis=1)[:, None, None], axis=1)[:, 0]
    return self.text_projection(pooled)

  def __call__(self, images: jax.Array, token_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.encode_image(images), self.encode_text(token_ids)
