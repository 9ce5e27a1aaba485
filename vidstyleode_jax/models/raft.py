"""RAFT optical flow (Teed & Deng 2020) with torchvision's raft_large / raft_small architectures, channel-last.

The flow network of the warping error (docs/metrics_protocol.md; the paper used FlowFormer, which no reachable package
ships). Module names follow torchvision's `torchvision.models.optical_flow.raft`, so `port_weights/raft.py` maps
its state dict mechanically: a `Conv2dNormActivation` `X.0` / `X.1` becomes X/conv / X/norm, `layerN.M` becomes
layerN_M.

  params/feature_encoder, context_encoder/{convnormrelu, layer{1,2,3}_{0,1}/{convnormrelu1..3, downsample}, conv}
  params/update_block/motion_encoder/{convcorr1, convcorr2, convflow1, convflow2, conv}
  params/update_block/recurrent_block/{convgru1, convgru2}/{convz, convr, convq}
  params/update_block/flow_head/{conv1, conv2}
  params/mask_predictor/{convrelu, conv}                                      (raft_large only)
  batch_stats/context_encoder/.../norm/{mean, var}                            (raft_large's BatchNorm)

Numerics (read from torchvision): convs pad (k - 1) // 2; the feature encoder uses InstanceNorm without affine
parameters, raft_large's context encoder eval-mode BatchNorm, raft_small's none (all eps 1e-5); the correlation
volume is the dot product of the two feature maps over sqrt(channels), average-pooled 2x2 three times; each update
samples it bilinearly around the current match (zeros outside) in a (2r + 1)^2 window per level; the final flow at
1/8 resolution is upsampled with raft_large's learned convex mask or, in raft_small, bilinearly (align_corners) and
multiplied by 8. Inputs are RGB in [-1, 1] with height and width divisible by 8 and at least 128. Convs and products
run at full float32 precision on every backend.
"""

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax import image_ops

HIGHEST = jax.lax.Precision.HIGHEST  # full float32 convs and products on every backend
NORM_EPS = 1e-5
DOWNSAMPLE = 8
MASK_MULTIPLIER = 0.25


@dataclasses.dataclass(frozen=True)
class Variant:
  """One of torchvision's two RAFT configurations."""

  block: str  # "residual" or "bottleneck"
  feature_layers: tuple[int, ...]
  context_layers: tuple[int, ...]
  context_norm: str | None  # "batch" or None; the feature encoder always uses "instance"
  corr_radius: int
  motion_corr_layers: tuple[int, ...]
  motion_flow_layers: tuple[int, int]
  motion_out: int
  hidden: int
  gru_kernels: tuple[tuple[int, int], ...]
  flow_head_hidden: int
  convex_upsampling: bool
  corr_levels: int = 4


VARIANTS = {
    "large": Variant("residual", (64, 64, 96, 128, 256), (64, 64, 96, 128, 256), "batch", 4, (256, 192), (128, 64),
                     128, 128, ((1, 5), (5, 1)), 256, True),
    "small": Variant("bottleneck", (32, 32, 64, 96, 128), (32, 32, 64, 96, 160), None, 3, (96,), (64, 32), 82, 96,
                     ((3, 3),), 128, False),
}


def _conv(features: int, kernel: Sequence[int], name: str, stride: int = 1) -> nn.Conv:
  """A conv with bias padded by (k - 1) // 2 on both sides, as torchvision's layers are."""
  kernel = tuple(kernel)
  return nn.Conv(features, kernel, strides=stride, padding=tuple(((k - 1) // 2,) * 2 for k in kernel),
                 precision=HIGHEST, name=name)


def instance_norm(x: jax.Array) -> jax.Array:
  """`nn.InstanceNorm2d` (no affine, no running statistics): per image and channel over space, biased variance."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + NORM_EPS)


class ConvNormAct(nn.Module):
  """torchvision's Conv2dNormActivation: conv (with bias) -> norm ("batch", "instance" or None) -> optional ReLU."""

  features: int
  kernel: int
  stride: int = 1
  norm: str | None = None
  relu: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = _conv(self.features, (self.kernel, self.kernel), "conv", self.stride)(x)
    if self.norm == "batch":
      x = nn.BatchNorm(use_running_average=True, epsilon=NORM_EPS, name="norm")(x)
    elif self.norm == "instance":
      x = instance_norm(x)
    return nn.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
  """relu(x' + conv3x3(conv3x3(x))), x' = x or, with stride 2, a strided 1x1 projection (raft_large)."""

  features: int
  stride: int
  norm: str | None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = ConvNormAct(self.features, 3, self.stride, self.norm, name="convnormrelu1")(x)
    y = ConvNormAct(self.features, 3, 1, self.norm, name="convnormrelu2")(y)
    if self.stride != 1:
      x = ConvNormAct(self.features, 1, self.stride, self.norm, relu=False, name="downsample")(x)
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  """relu(x' + conv1x1(conv3x3(conv1x1(x)))) with features // 4 inside (raft_small)."""

  features: int
  stride: int
  norm: str | None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = ConvNormAct(self.features // 4, 1, 1, self.norm, name="convnormrelu1")(x)
    y = ConvNormAct(self.features // 4, 3, self.stride, self.norm, name="convnormrelu2")(y)
    y = ConvNormAct(self.features, 1, 1, self.norm, name="convnormrelu3")(y)
    if self.stride != 1:
      x = ConvNormAct(self.features, 1, self.stride, self.norm, relu=False, name="downsample")(x)
    return nn.relu(x + y)


class FeatureEncoder(nn.Module):
  """7x7 stride-2 conv, three stages of two blocks (strides 1, 2, 2), a 1x1 conv: 1/8 resolution."""

  layers: Sequence[int]
  block: str
  norm: str | None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, height, width, 3] -> [batch, height / 8, width / 8, layers[4]]."""
    block = ResidualBlock if self.block == "residual" else BottleneckBlock
    x = ConvNormAct(self.layers[0], 7, 2, self.norm, name="convnormrelu")(x)
    for stage, stride in zip((1, 2, 3), (1, 2, 2)):
      x = block(self.layers[stage], stride, self.norm, name=f"layer{stage}_0")(x)
      x = block(self.layers[stage], 1, self.norm, name=f"layer{stage}_1")(x)
    return nn.Conv(self.layers[4], (1, 1), precision=HIGHEST, name="conv")(x)


class MotionEncoder(nn.Module):
  """Encodes the correlation features and the current flow; the flow is appended to the output."""

  corr_layers: Sequence[int]
  flow_layers: Sequence[int]
  out_channels: int

  @nn.compact
  def __call__(self, flow: jax.Array, corr: jax.Array) -> jax.Array:
    corr = ConvNormAct(self.corr_layers[0], 1, name="convcorr1")(corr)
    if len(self.corr_layers) == 2:
      corr = ConvNormAct(self.corr_layers[1], 3, name="convcorr2")(corr)
    encoded = ConvNormAct(self.flow_layers[0], 7, name="convflow1")(flow)
    encoded = ConvNormAct(self.flow_layers[1], 3, name="convflow2")(encoded)
    encoded = ConvNormAct(self.out_channels - 2, 3, name="conv")(jnp.concatenate([corr, encoded], axis=-1))
    return jnp.concatenate([encoded, flow], axis=-1)


class ConvGRU(nn.Module):
  """h' = (1 - z) h + z q, z = sigmoid(convz[h, x]), r = sigmoid(convr[h, x]), q = tanh(convq[r h, x])."""

  kernel: tuple[int, int]

  @nn.compact
  def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
    hx = jnp.concatenate([h, x], axis=-1)
    z = nn.sigmoid(_conv(h.shape[-1], self.kernel, "convz")(hx))
    r = nn.sigmoid(_conv(h.shape[-1], self.kernel, "convr")(hx))
    q = jnp.tanh(_conv(h.shape[-1], self.kernel, "convq")(jnp.concatenate([r * h, x], axis=-1)))
    return (1 - z) * h + z * q


class RecurrentBlock(nn.Module):
  kernels: Sequence[tuple[int, int]]

  @nn.compact
  def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
    for index, kernel in enumerate(self.kernels):
      h = ConvGRU(tuple(kernel), name=f"convgru{index + 1}")(h, x)
    return h


class FlowHead(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    return _conv(2, (3, 3), "conv2")(nn.relu(_conv(self.hidden, (3, 3), "conv1")(h)))


def correlation_pyramid(features1: jax.Array, features2: jax.Array, levels: int) -> list[jax.Array]:
  """All-pairs correlation <f1(p), f2(q)> / sqrt(channels), then 2x2 average pools over q (floor).

  Args:
    features1, features2: [batch, h, w, channels].

  Returns:
    `levels` arrays [batch, h, w, h_l, w_l], h_l = h // 2**l.
  """
  corr = jnp.einsum("bijc,bklc->bijkl", features1, features2, precision=HIGHEST) / math.sqrt(features1.shape[-1])
  pyramid = [corr]
  for _ in range(levels - 1):
    b, h, w, hl, wl = corr.shape
    corr = corr[..., :hl // 2 * 2, :wl // 2 * 2].reshape(b, h, w, hl // 2, 2, wl // 2, 2).mean(axis=(4, 6))
    pyramid.append(corr)
  return pyramid


def lookup(pyramid: Sequence[jax.Array], coords: jax.Array, radius: int) -> jax.Array:
  """Correlation features around `coords`: per level, a (2r + 1)^2 window sampled bilinearly (zeros outside).

  Args:
    pyramid: from `correlation_pyramid`.
    coords: [batch, h, w, 2] matched (x, y) positions in the second image, at 1/8 resolution.

  Returns:
    [batch, h, w, levels * (2r + 1)^2]; per level, channel i * (2r + 1) + j samples (x + i - r, y + j - r).
  """
  batch, h, w, _ = coords.shape
  offsets = jnp.arange(-radius, radius + 1, dtype=coords.dtype)
  features = []
  for level, corr in enumerate(pyramid):
    centre = coords.reshape(batch * h * w, 1, 1, 2) / 2**level
    x, y = jnp.broadcast_arrays(centre[..., 0] + offsets[:, None], centre[..., 1] + offsets[None, :])
    maps = corr.reshape(batch * h * w, *corr.shape[3:], 1)
    features.append(image_ops.bilinear_sample(maps, x, y, "zeros").reshape(batch, h, w, -1))
  return jnp.concatenate(features, axis=-1)


class UpdateBlock(nn.Module):
  """One RAFT iteration: look up the correlation, encode motion, update the hidden state, move the matches."""

  variant: Variant

  @nn.compact
  def __call__(self, carry, pyramid, context, coords0):
    hidden, coords1 = carry
    v = self.variant
    corr = lookup(pyramid, coords1, v.corr_radius)
    motion = MotionEncoder(v.motion_corr_layers, v.motion_flow_layers, v.motion_out, name="motion_encoder")(
        coords1 - coords0, corr)
    hidden = RecurrentBlock(v.gru_kernels, name="recurrent_block")(hidden, jnp.concatenate([context, motion], -1))
    delta = FlowHead(v.flow_head_hidden, name="flow_head")(hidden)
    return (hidden, coords1 + delta), None


class MaskPredictor(nn.Module):
  """raft_large's upsampling weights: 3x3 conv (256, ReLU), 1x1 conv to 9 * 8 * 8, times 0.25."""

  @nn.compact
  def __call__(self, hidden: jax.Array) -> jax.Array:
    x = ConvNormAct(256, 3, name="convrelu")(hidden)
    return MASK_MULTIPLIER * nn.Conv(9 * DOWNSAMPLE**2, (1, 1), precision=HIGHEST, name="conv")(x)


def min_image_size(variant: str) -> int:
  """The smallest height and width RAFT takes: the 1/8 feature grid must survive the correlation pyramid's pools."""
  return DOWNSAMPLE * 2 * 2**(VARIANTS[variant].corr_levels - 1)


def convex_upsample(flow: jax.Array, mask: jax.Array) -> jax.Array:
  """Each 8x8 output patch is a softmax-weighted combination of the 3x3 flow neighbourhood (times 8).

  Args:
    flow: [batch, h, w, 2]; mask: [batch, h, w, 9 * 8 * 8] ordered (neighbour, dy, dx).

  Returns:
    [batch, 8h, 8w, 2].
  """
  batch, h, w, _ = flow.shape
  weights = jax.nn.softmax(mask.reshape(batch, h, w, 9, DOWNSAMPLE, DOWNSAMPLE), axis=3)
  padded = jnp.pad(DOWNSAMPLE * flow, ((0, 0), (1, 1), (1, 1), (0, 0)))
  neighbours = jnp.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=3)
  patches = jnp.einsum("bhwkyx,bhwkc->bhywxc", weights, neighbours, precision=HIGHEST)
  return patches.reshape(batch, h * DOWNSAMPLE, w * DOWNSAMPLE, 2)


class RAFT(nn.Module):
  """RAFT flow from image1 to image2: image1(p) matches image2(p + flow(p)).

  Attributes:
    variant: "large" (torchvision's raft_large) or "small" (raft_small).
    num_flow_updates: refinement iterations (torchvision's default 12).
  """

  variant: str = "large"
  num_flow_updates: int = 12

  @nn.compact
  def __call__(self, image1: jax.Array, image2: jax.Array) -> jax.Array:
    """image1, image2: [batch, height, width, 3] in [-1, 1] -> flow [batch, height, width, 2] in pixels (x, y)."""
    v = VARIANTS[self.variant]
    batch, height, width, _ = image1.shape
    min_size = min_image_size(self.variant)
    if height % DOWNSAMPLE or width % DOWNSAMPLE or min(height, width) < min_size or image2.shape != image1.shape:
      raise ValueError(f"RAFT needs two images of the same size, height and width divisible by {DOWNSAMPLE} and at "
                       f"least {min_size}; got {list(image1.shape)} and {list(image2.shape)}")
    features = FeatureEncoder(v.feature_layers, v.block, "instance", name="feature_encoder")(
        jnp.concatenate([image1, image2], axis=0))
    pyramid = correlation_pyramid(features[:batch], features[batch:], v.corr_levels)
    context = FeatureEncoder(v.context_layers, v.block, v.context_norm, name="context_encoder")(image1)
    hidden, context = jnp.tanh(context[..., :v.hidden]), nn.relu(context[..., v.hidden:])
    h, w = height // DOWNSAMPLE, width // DOWNSAMPLE
    grid_y, grid_x = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    coords0 = jnp.broadcast_to(jnp.stack([grid_x, grid_y], axis=-1), (batch, h, w, 2))
    updates = nn.scan(UpdateBlock, variable_broadcast="params", split_rngs={"params": False},
                      in_axes=(nn.broadcast, nn.broadcast, nn.broadcast), length=self.num_flow_updates)
    (hidden, coords1), _ = updates(v, name="update_block")((hidden, coords0), pyramid, context, coords0)
    flow = coords1 - coords0
    if v.convex_upsampling:
      return convex_upsample(flow, MaskPredictor(name="mask_predictor")(hidden))
    return DOWNSAMPLE * image_ops.resize_bilinear_align_corners(flow, height, width)
