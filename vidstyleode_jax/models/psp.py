"""Frozen pSp encoder (pixel2style2pixel `GradualStyleEncoder` on an IR-SE50 backbone), channel-last.

Numerics follow docs/weight_formats.md §3.3: BatchNorm in eval mode (running statistics, epsilon 1e-5), per-channel
PReLU, squeeze-excitation units, a feature pyramid merged with bilinear `align_corners=True` up-sampling, and one
GradualStyleBlock (stride-2 convs with LeakyReLU 0.01, then an equalised dense layer) per W+ row.

Variable tree (`port_weights/psp.py` maps pSp's `encoder.*` keys onto it):

  params/stem_conv/kernel, stem_bn/{scale, bias}, stem_prelu/weight         (`input_layer.{0,1,2}`)
  params/unit_{n}/bn_in, conv_in, prelu, conv_out, bn_out,                  (`body.{n}.res_layer.{0..4}`)
                  squeeze_excite/{fc1, fc2}/kernel,                         (`body.{n}.res_layer.5.{fc1,fc2}`)
                  shortcut_conv/kernel, shortcut_bn                         (`body.{n}.shortcut_layer.{0,1}`)
  params/lateral_c2/{kernel, bias}, lateral_c1/{kernel, bias}               (`latlayer1`, `latlayer2`)
  params/style_{i}/conv_{m}/{kernel, bias}, style_{i}/linear/{kernel, bias} (`styles.{i}.convs.{2m}`, `.linear`)
  batch_stats/<every *_bn / bn_*>/{mean, var}                               (`running_mean`, `running_var`)
  latent_avg/w_plus                           [n_styles, style_dim]         (the file's `latent_avg`)
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vidstyleode_jax import image_ops
from vidstyleode_jax.models.layers import EqualDense

BATCH_NORM_EPS = 1e-5
STYLE_LEAKY_SLOPE = 0.01
SQUEEZE_REDUCTION = 16
# W+ rows [0, COARSE_STYLES) read the 1/16-resolution features, [COARSE_STYLES, MEDIUM_END) the 1/8 ones, the rest
# the 1/4 ones (pSp's coarse_ind = 3 and middle_ind = 7).
COARSE_STYLES = 3
MEDIUM_END = 7


class PReLU(nn.Module):
  """PyTorch `nn.PReLU(channels)`: max(x, 0) + weight * min(x, 0) with one slope per channel (initialised 0.25)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [..., channels] -> same shape."""
    weight = self.param("weight", nn.initializers.constant(0.25), (x.shape[-1],))
    return jnp.where(x >= 0, x, weight * x)


def batch_norm(name: str) -> nn.BatchNorm:
  """Eval-mode BatchNorm2d: (x - mean) / sqrt(var + 1e-5) * scale + bias with the stored "batch_stats"."""
  return nn.BatchNorm(use_running_average=True, epsilon=BATCH_NORM_EPS, name=name)


def conv(features: int, kernel_size: int, stride: int, use_bias: bool, name: str) -> nn.Conv:
  """PyTorch-style conv with padding kernel_size // 2 on every side (never XLA 'SAME', docs/weight_formats.md §0.2)."""
  pad = kernel_size // 2
  return nn.Conv(features, (kernel_size, kernel_size), strides=stride, padding=((pad, pad), (pad, pad)),
                 use_bias=use_bias, name=name)


class SqueezeExcite(nn.Module):
  """x * sigmoid(fc2(relu(fc1(mean over space of x)))), both dense layers without bias."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, height, width, channels] -> same shape."""
    channels = x.shape[-1]
    gate = jnp.mean(x, axis=(1, 2))
    gate = nn.relu(nn.Dense(channels // SQUEEZE_REDUCTION, use_bias=False, name="fc1")(gate))
    gate = nn.sigmoid(nn.Dense(channels, use_bias=False, name="fc2")(gate))
    return x * gate[:, None, None, :]


class IRSEUnit(nn.Module):
  """IR-SE bottleneck: BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN -> SE, plus the shortcut; no final activation.

  The shortcut is a strided slice (pSp's MaxPool2d(1, stride)) when the channel count stays, else a strided 1x1
  conv + BN.
  """

  depth: int
  stride: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, height, width, in] -> [batch, height / stride, width / stride, depth]."""
    if x.shape[-1] == self.depth:
      shortcut = x[:, ::self.stride, ::self.stride]
    else:
      shortcut = conv(self.depth, 1, self.stride, False, "shortcut_conv")(x)
      shortcut = batch_norm("shortcut_bn")(shortcut)
    residual = batch_norm("bn_in")(x)
    residual = conv(self.depth, 3, 1, False, "conv_in")(residual)
    residual = PReLU(name="prelu")(residual)
    residual = conv(self.depth, 3, self.stride, False, "conv_out")(residual)
    residual = batch_norm("bn_out")(residual)
    residual = SqueezeExcite(name="squeeze_excite")(residual)
    return residual + shortcut


class GradualStyleBlock(nn.Module):
  """`num_convs` x (stride-2 conv3x3 with bias -> LeakyReLU 0.01) down to 1x1, then an equalised dense layer."""

  style_dim: int
  num_convs: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, 2**num_convs, 2**num_convs, channels] -> one W+ row [batch, style_dim]."""
    for m in range(self.num_convs):
      x = nn.leaky_relu(conv(self.style_dim, 3, 2, True, f"conv_{m}")(x), STYLE_LEAKY_SLOPE)
    return EqualDense(self.style_dim, name="linear")(x.reshape(x.shape[0], self.style_dim))


class PSPEncoder(nn.Module):
  """pSp GradualStyleEncoder: images -> W+ codes of a StyleGAN2 generator.

  Attributes:
    n_styles: number of W+ rows, 2 * log2(generator resolution) - 2 (18 for 1024).
    style_dim: size of each W+ row (512).
    stage_channels: depth of the four IR-SE stages (64, 128, 256, 512); the stem outputs stage_channels[0]. Tiny
      test models divide them (a depth must be a multiple of 16 for the squeeze-excitation).
    stage_units: bottleneck units per stage (3, 4, 14, 3 for IR-SE50); the first unit of each stage has stride 2.
      The pyramid taps the outputs of stages 2, 3 and 4 (pSp's units 6, 20 and 23).
    input_size: height = width of the input images (256); the style blocks' conv counts follow from it.
    add_latent_avg: add the stored "latent_avg" collection to the codes (pSp's `start_from_latent_avg`).

  `init(key, images)` creates "params", "batch_stats" (mean 0, var 1) and, with add_latent_avg, "latent_avg"
  (zeros); ported weights replace them all.
  """

  n_styles: int = 18
  style_dim: int = 512
  stage_channels: Sequence[int] = (64, 128, 256, 512)
  stage_units: Sequence[int] = (3, 4, 14, 3)
  input_size: int = 256
  add_latent_avg: bool = True

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """images: [batch, input_size, input_size, input_channels] in [-1, 1] -> W+ [batch, n_styles, style_dim]."""
    if images.ndim != 4 or images.shape[1:3] != (self.input_size, self.input_size):
      raise ValueError(f"PSPEncoder expects images of shape [batch, {self.input_size}, {self.input_size}, channels], "
                       f"got {images.shape}.")
    x = conv(self.stage_channels[0], 3, 1, False, "stem_conv")(images)
    x = PReLU(name="stem_prelu")(batch_norm("stem_bn")(x))
    features = []
    unit_index = 0
    for depth, units in zip(self.stage_channels, self.stage_units):
      for unit in range(units):
        x = IRSEUnit(depth, 2 if unit == 0 else 1, name=f"unit_{unit_index}")(x)
        unit_index += 1
      features.append(x)
    c1, c2, c3 = features[1:]
    top_channels = c3.shape[-1]
    p2 = image_ops.resize_bilinear_align_corners(c3, *c2.shape[1:3])
    p2 = p2 + nn.Conv(top_channels, (1, 1), name="lateral_c2")(c2)
    p1 = image_ops.resize_bilinear_align_corners(p2, *c1.shape[1:3])
    p1 = p1 + nn.Conv(top_channels, (1, 1), name="lateral_c1")(c1)
    sources = [c3] * COARSE_STYLES + [p2] * (MEDIUM_END - COARSE_STYLES) + [p1] * max(self.n_styles - MEDIUM_END, 0)
    codes = jnp.stack([
        GradualStyleBlock(self.style_dim, int(np.log2(sources[i].shape[1])), name=f"style_{i}")(sources[i])
        for i in range(self.n_styles)
    ], axis=1)
    if self.add_latent_avg:
      latent_avg = self.variable("latent_avg", "w_plus", jnp.zeros, (self.n_styles, self.style_dim), jnp.float32)
      codes = codes + latent_avg.value.astype(codes.dtype)
    return codes
