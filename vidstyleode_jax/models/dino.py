"""DINO ViT settings, its preprocessing, and the Splice descriptors (docs/model.md §10.3, §10.4)."""

import jax
import jax.numpy as jnp

from vidstyleode_jax import image_ops
from vidstyleode_jax.models import vit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_PRETRAINED_SIZE = 224


def dino_vit(
    patch_size: int,
    width: int,
    depth: int,
    num_heads: int,
    mlp_dim: int,
    pretrained_grid: int | None = None,
) -> vit.VisionTransformer:
  """A DINO ViT (ViT-B/16: 16, 768, 12, 12, 3072): eps 1e-6, exact GELU, patch bias, no ln_pre, DINO positions.

  pretrained_grid: side of the stored position table; default 224 // patch_size, as DINO's released weights.
  """
  return vit.VisionTransformer(
      patch_size=patch_size,
      width=width,
      depth=depth,
      num_heads=num_heads,
      mlp_dim=mlp_dim,
      layer_norm_eps=1e-6,
      activation="gelu",
      patch_bias=True,
      pre_norm=False,
      pretrained_grid=pretrained_grid or DINO_PRETRAINED_SIZE // patch_size,
      pos_interpolation="dino",
  )


def dino_preprocess(images: jax.Array, short_side: int) -> jax.Array:
  """torchvision `Resize(short_side)` (bilinear, antialiased, no crop), then ImageNet mean/std.

  Args:
    images: [batch, height, width, 3] float in [0, 1].
    short_side: 244 in VidStyleODE, 224 in Splice.

  Returns:
    [batch, new_height, new_width, 3] with the sizes of `image_ops.short_side_size`.
  """
  height, width = image_ops.short_side_size(images.shape[1], images.shape[2], short_side)
  images = image_ops.resize_antialiased(images, height, width, "bilinear")
  return (images - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def key_self_similarity(keys: jax.Array) -> jax.Array:
  """Cosine self-similarity of attention keys, CLS included: <k_i, k_j> / max(|k_i| |k_j|, 1e-8).

  Args:
    keys: [batch, tokens, width].

  Returns:
    [batch, tokens, tokens].
  """
  norms = jnp.linalg.norm(keys, axis=-1)
  dots = jnp.einsum("bid,bjd->bij", keys, keys)
  return dots / jnp.maximum(norms[:, :, None] * norms[:, None, :], 1e-8)


def dino_descriptors(
    model: vit.VisionTransformer, params, images: jax.Array, short_side: int, key_layer: int, cls_layer: int
) -> dict[str, jax.Array]:
  """The Splice structure and appearance descriptors of images in [0, 1].

  Args:
    model: a DINO `VisionTransformer` (see `dino_vit`).
    params: its parameters (the `params` collection's contents).
    images: [batch, height, width, 3] float in [0, 1].
    short_side: DINO input short side (244 in VidStyleODE).
    key_layer: block whose keys give the self-similarity (11, the last, for ViT-B).
    cls_layer: block whose output CLS is the appearance descriptor (8 in VidStyleODE).

  Returns:
    self_similarity: [batch, tokens, tokens]; cls: [batch, width] (block output before the final norm).
  """
  outputs = model.apply({"params": params}, dino_preprocess(images, short_side), key_layer=key_layer)
  return {
      "self_similarity": key_self_similarity(outputs["keys"]),
      "cls": outputs["block_outputs"][cls_layer][:, 0],
  }
