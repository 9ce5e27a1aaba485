"""VGG16's convolutional blocks 1-4, frozen, for the perceptual loss of the paper's Table 3 ablation.

docs/model.md §21.5. torchvision's `vgg16().features` up to relu4_3: 3x3 convolutions with bias and zero padding 1,
each followed by ReLU, blocks of 2, 2, 3 and 3 convolutions separated by 2x2 max pooling (stride 2, floor). Inputs
are normalised with the ImageNet mean and std, as torchvision's weights expect. The outputs are the last ReLU of each
block (relu1_2, relu2_2, relu3_3, relu4_3), the layers of Johnson et al.'s perceptual loss.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax.models.dino import IMAGENET_MEAN, IMAGENET_STD

BLOCK_DEPTHS = (2, 2, 3, 3)
IMAGENET_WIDTHS = (64, 128, 256, 512)


class VGG16(nn.Module):
  """Parameters conv{block}_{i} (block 1-4, i from 1), each {kernel [3, 3, in, out], bias [out]}.

  Attributes:
    widths: output channels of each block's convolutions ((64, 128, 256, 512) for torchvision's VGG16).
  """

  widths: Sequence[int] = IMAGENET_WIDTHS

  @nn.compact
  def __call__(self, images01: jax.Array) -> list[jax.Array]:
    """images01: [n, H, W, 3] in [0, 1] -> [relu1_2 [n, H, W, w1], relu2_2 [n, H/2, W/2, w2], ..., relu4_3]
    (each pooling halves the size, rounding down)."""
    x = (images01 - jnp.asarray(IMAGENET_MEAN, images01.dtype)) / jnp.asarray(IMAGENET_STD, images01.dtype)
    outputs = []
    for block, (depth, width) in enumerate(zip(BLOCK_DEPTHS, self.widths), start=1):
      if block > 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      for i in range(1, depth + 1):
        x = nn.relu(nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), name=f"conv{block}_{i}")(x))
      outputs.append(x)
    return outputs
