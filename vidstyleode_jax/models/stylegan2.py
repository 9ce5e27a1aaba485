"""Frozen StyleGAN2 generator with the numerics of rosinality/stylegan2-pytorch, channel-last.

The parameter tree follows rosinality's state-dict keys so that a checkpoint maps onto it mechanically
(see docs/weight_formats.md §1.3 and port_weights/rosinality.py):

  params/style_{1..n_mlp}/{kernel, bias}                       mapping MLP (`style.{i}.*`)
  params/input                                                 [1, 4, 4 // aspect, C(4)] (`input.input`)
  params/{conv1, convs_{i}}/conv/{kernel, modulation/{kernel, bias}}, noise/weight, activate/bias
  params/{to_rgb1, to_rgbs_{j}}/conv/{kernel, modulation/{kernel, bias}}, bias
  noise/noise_{k}                                              [1, height, width, 1] (`noises.noise_{k}`)

Weights are stored raw (N(0, 1) kernels, modulation biases starting at 1) and scaled at run time. The noise maps
are constants (rosinality's randomize_noise=False) kept in the separate "noise" collection, so "params" holds only
weights. The blur / up-sampling FIR kernels are recomputed, not stored.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vidstyleode_jax.models.layers import EqualDense, FusedLeakyReLU, fused_leaky_relu

DEMOD_EPS = 1e-8
# FIR of the up-sampling blur and of the skip up-sampling: outer([1, 3, 3, 1]) / 64 * 4 (gain up**2 = 4); [4, 4].
BLUR_KERNEL = (np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0]) / 16.0).astype(np.float32)


def upfirdn2d(x: jax.Array, kernel, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> jax.Array:
  """Upsample by zero insertion, pad, convolve with `kernel`, keep every `down`-th sample; on both spatial axes.

  Args:
    x: [batch, height, width, channels].
    kernel: [kh, kw] FIR kernel, applied as a true convolution to every channel separately.
    up: zero insertion factor; up - 1 zeros follow every input sample, including the last one.
    down: subsampling factor, counted from sample 0.
    pad: (before, after) zero padding after the zero insertion; negative values crop.

  Returns:
    [batch, (height * up + pad[0] + pad[1] - kh) // down + 1, (same for width), channels].
  """
  channels = x.shape[-1]
  kernel = jnp.asarray(kernel, x.dtype)
  zero = jnp.zeros((), x.dtype)
  spatial = (pad[0], pad[1] + up - 1, up - 1)
  x = jax.lax.pad(x, zero, ((0, 0, 0), spatial, spatial, (0, 0, 0)))
  depthwise = jnp.tile(kernel[::-1, ::-1, None, None], (1, 1, 1, channels))
  return jax.lax.conv_general_dilated(
      x,
      depthwise,
      window_strides=(down, down),
      padding="VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=channels,
  )


class ModulatedConv2d(nn.Module):
  """StyleGAN2 modulated conv in the batch-friendly form: scale inputs by styles, shared conv, scale outputs.

  With `upsample`, the conv is rosinality's stride-2 transposed conv (as an input-dilated conv with the spatially
  flipped kernel) followed by the [1, 3, 3, 1] blur with pad (1, 1), so the output is twice the input size.
  """

  features: int
  kernel_size: int
  demodulate: bool = True
  upsample: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    """x: [batch, height, width, in]; w: [batch, style_dim] -> [batch, height', width', features]."""
    in_features = x.shape[-1]
    styles = EqualDense(in_features, bias_init_value=1.0, name="modulation")(w)
    kernel = self.param(
        "kernel",
        nn.initializers.normal(1.0),
        (self.kernel_size, self.kernel_size, in_features, self.features),
    )
    kernel = kernel * (1.0 / math.sqrt(in_features * self.kernel_size**2))
    x = x * styles[:, None, None, :]
    if self.upsample:
      edge = self.kernel_size - 1
      x = jax.lax.conv_general_dilated(
          x,
          kernel[::-1, ::-1],
          window_strides=(1, 1),
          padding=((edge, edge), (edge, edge)),
          lhs_dilation=(2, 2),
          dimension_numbers=("NHWC", "HWIO", "NHWC"),
      )
      x = upfirdn2d(x, BLUR_KERNEL, pad=(1, 1))
    else:
      half = self.kernel_size // 2
      x = jax.lax.conv_general_dilated(
          x,
          kernel,
          window_strides=(1, 1),
          padding=((half, half), (half, half)),
          dimension_numbers=("NHWC", "HWIO", "NHWC"),
      )
    if self.demodulate:
      energy = jnp.square(styles) @ jnp.sum(jnp.square(kernel), axis=(0, 1))
      x = x * jax.lax.rsqrt(energy + DEMOD_EPS)[:, None, None, :]
    return x


class NoiseInjection(nn.Module):
  """x + weight * noise, with a learned scalar strength `weight` of shape [1] (zero-initialised)."""

  @nn.compact
  def __call__(self, x: jax.Array, noise: jax.Array) -> jax.Array:
    """x: [batch, height, width, channels]; noise: broadcastable to x, e.g. [1, height, width, 1]."""
    weight = self.param("weight", nn.initializers.zeros, (1,))
    return x + weight * noise


class StyledConv(nn.Module):
  """Modulated 3x3 conv, constant noise, fused bias + leaky ReLU, then an optional clamp to [-clamp, clamp]."""

  features: int
  upsample: bool = False
  clamp: float | None = None

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array) -> jax.Array:
    """x: [batch, h, w, in]; w: [batch, style_dim]; noise: [1, h', w', 1] -> [batch, h', w', features]."""
    x = ModulatedConv2d(self.features, 3, upsample=self.upsample, name="conv")(x, w)
    x = NoiseInjection(name="noise")(x, noise)
    x = FusedLeakyReLU(name="activate")(x)
    return x if self.clamp is None else jnp.clip(x, -self.clamp, self.clamp)


class ToRGB(nn.Module):
  """1x1 modulated conv to RGB without demodulation, plus bias, plus the 2x up-sampled previous image if given.

  With `clamp` (StyleGAN2-ADA), conv + bias is clamped to [-clamp, clamp] before the previous image is added.
  """

  clamp: float | None = None

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, skip: jax.Array | None = None) -> jax.Array:
    """x: [batch, h, w, channels]; w: [batch, style_dim]; skip: [batch, h/2, w/2, 3] or None -> [batch, h, w, 3]."""
    rgb = ModulatedConv2d(3, 1, demodulate=False, name="conv")(x, w)
    rgb = rgb + self.param("bias", nn.initializers.zeros, (3,))
    if self.clamp is not None:
      rgb = jnp.clip(rgb, -self.clamp, self.clamp)
    if skip is not None:
      rgb = rgb + upfirdn2d(skip, BLUR_KERNEL, up=2, pad=(2, 1))
    return rgb


class Generator(nn.Module):
  """rosinality StyleGAN2 generator: mapping network and W+ synthesis with constant noise.

  Attributes:
    resolution: output height, a power of 2 (>= 4).
    aspect: height / width of the output, 1, 2 or 4; 2 is StyleGAN-Human's 1024x512 layout (4x2 constant input).
    style_dim: size of z and of every W+ row.
    n_mlp: number of mapping layers.
    channel_multiplier: rosinality's channel multiplier (2 for config-f).
    channel_divisor: every entry of the channel table is integer-divided by this, for small test and demo models.
    lr_mlp: learning-rate multiplier of the mapping layers (enters the forward pass through the equalised lr).
    conv_clamp: None (rosinality), or StyleGAN2-ADA's conv_clamp (256 for StyleGAN-Human, docs/weight_formats.md §2.3):
      every styled conv's activation and every to-RGB output (before the skip sum) is clamped to [-conv_clamp,
      conv_clamp].

  `Generator(...).init(key, w_plus)` creates every variable, the mapping layers included: "params" (weights) and
  "noise" (the constant noise maps, drawn N(0, 1) from the "params" PRNG stream). Synthesis is `apply(variables,
  w_plus)`; the mapping network is `apply(variables, z, method=Generator.mapping)`.
  """

  resolution: int
  aspect: int = 1
  style_dim: int = 512
  n_mlp: int = 8
  channel_multiplier: int = 2
  channel_divisor: int = 1
  lr_mlp: float = 0.01
  conv_clamp: float | None = None

  @property
  def log_resolution(self) -> int:
    return int(math.log2(self.resolution))

  @property
  def n_latent(self) -> int:
    """Number of W+ rows: 2 * log2(resolution) - 2 (18 at 1024)."""
    return 2 * self.log_resolution - 2

  def channels(self, size: int) -> int:
    """Channel count of the feature maps of height `size`: rosinality's table divided by channel_divisor."""
    full = 512 if size <= 32 else 16 * 1024 * self.channel_multiplier // size
    return full // self.channel_divisor

  def noise_shapes(self) -> list[tuple[int, int, int, int]]:
    """Shapes of noise_0 ... noise_{2L-4}: [1, h, h // aspect, 1] with h = 4, 8, 8, 16, 16, ..., resolution."""
    sizes = [2 ** ((k + 5) // 2) for k in range(2 * self.log_resolution - 3)]
    return [(1, size, size // self.aspect, 1) for size in sizes]

  def setup(self):
    if self.resolution < 4 or self.resolution & (self.resolution - 1):
      raise ValueError(f"Generator.resolution must be a power of 2 >= 4, got {self.resolution}.")
    if self.aspect not in (1, 2, 4):
      raise ValueError(f"Generator.aspect must be 1, 2 or 4, got {self.aspect}.")
    self.style = {
        str(i): EqualDense(self.style_dim, lr_mul=self.lr_mlp) for i in range(1, self.n_mlp + 1)
    }
    self.constant_input = self.param(
        "input", nn.initializers.normal(1.0), (1, 4, 4 // self.aspect, self.channels(4))
    )
    self.conv1 = StyledConv(self.channels(4), clamp=self.conv_clamp)
    self.to_rgb1 = ToRGB(clamp=self.conv_clamp)
    block_sizes = [2**res for res in range(3, self.log_resolution + 1)]
    self.convs = [
        StyledConv(self.channels(size), upsample=upsample, clamp=self.conv_clamp)
        for size in block_sizes
        for upsample in (True, False)
    ]
    self.to_rgbs = [ToRGB(clamp=self.conv_clamp) for _ in block_sizes]
    self.noises = [
        self.variable("noise", f"noise_{k}", lambda s: jax.random.normal(self.make_rng("params"), s), shape)
        for k, shape in enumerate(self.noise_shapes())
    ]

  def mapping(self, z: jax.Array) -> jax.Array:
    """z: [batch, style_dim] -> w: [batch, style_dim]; PixelNorm, then n_mlp equalised dense + fused leaky ReLU."""
    x = z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)
    for i in range(1, self.n_mlp + 1):
      x = fused_leaky_relu(self.style[str(i)](x))
    return x

  def __call__(self, w_plus: jax.Array) -> jax.Array:
    """w_plus: [batch, n_latent, style_dim] -> images [batch, resolution, resolution // aspect, 3], ~[-1, 1].

    Row use follows rosinality: conv1 row 0, to_rgb1 row 1, convs_{2j} row 2j+1, convs_{2j+1} row 2j+2 and
    to_rgbs_{j} row 2j+3; layer k adds noise_{k}. The output is not clamped.
    """
    if w_plus.ndim != 3 or w_plus.shape[1:] != (self.n_latent, self.style_dim):
      raise ValueError(
          f"Generator expects w_plus of shape [batch, {self.n_latent}, {self.style_dim}], got {w_plus.shape}."
      )
    if self.is_initializing():
      self.mapping(w_plus[:, 0])
    noises = [noise.value for noise in self.noises]
    x = jnp.broadcast_to(self.constant_input, (w_plus.shape[0],) + self.constant_input.shape[1:])
    x = self.conv1(x, w_plus[:, 0], noises[0])
    image = self.to_rgb1(x, w_plus[:, 1])
    for j, to_rgb in enumerate(self.to_rgbs):
      x = self.convs[2 * j](x, w_plus[:, 2 * j + 1], noises[2 * j + 1])
      x = self.convs[2 * j + 1](x, w_plus[:, 2 * j + 2], noises[2 * j + 2])
      image = to_rgb(x, w_plus[:, 2 * j + 3], image)
    return image
