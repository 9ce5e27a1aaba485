"""A small PyTorch StyleGAN2 generator in rosinality's exact state-dict key layout.

The layout: docs/weight_formats.md §1.3, §1.7.

Written from the specification, for parity tests and checkpoint fixtures. The forward pass follows §1.4
literally: per-sample weights through a grouped conv, the up-sampling conv as a grouped stride-2
`conv_transpose2d` followed by the blur, and upfirdn2d as zero insertion, padding and a flipped-kernel conv.
Tensors are NCHW as in the source. The channel table is rosinality's, divided by `channel_divisor`;
`aspect=2` gives the StyleGAN-Human layout (4x2 constant input, output height x height/2).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def blur_kernel() -> torch.Tensor:
  """outer([1, 3, 3, 1]) normalised to sum 1, times 4: [4, 4]."""
  taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
  kernel = taps[:, None] * taps[None, :]
  return kernel / kernel.sum() * 4


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
  """x: [batch, channels, h, w]. Zero-insert (up - 1 after every sample), pad (negative crops), convolve, subsample."""
  batch, channels, height, width = x.shape
  upsampled = x.new_zeros(batch, channels, height * up, width * up)
  upsampled[:, :, ::up, ::up] = x
  padded = F.pad(upsampled, (pad[0], pad[1], pad[0], pad[1]))
  flipped = torch.flip(kernel, (0, 1))[None, None].repeat(channels, 1, 1, 1)
  return F.conv2d(padded, flipped, groups=channels)[:, :, ::down, ::down]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
  """lrelu_0.2(x + bias) * sqrt(2); bias over dim 1."""
  shape = (1, -1) + (1,) * (x.ndim - 2)
  return F.leaky_relu(x + bias.view(shape), 0.2) * math.sqrt(2)


class PixelNorm(nn.Module):

  def forward(self, x):
    return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
  """y = x (W * lr_mul / sqrt(in))^T + b * lr_mul, optionally followed by the fused leaky ReLU."""

  def __init__(self, in_dim, out_dim, bias_init=0.0, lr_mul=1.0, activation=False):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
    self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
    self.scale = lr_mul / math.sqrt(in_dim)
    self.lr_mul = lr_mul
    self.activation = activation

  def forward(self, x):
    if self.activation:
      return fused_leaky_relu(x @ (self.weight * self.scale).t(), self.bias * self.lr_mul)
    return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):

  def __init__(self, pad):
    super().__init__()
    self.register_buffer("kernel", blur_kernel())
    self.pad = pad

  def forward(self, x):
    return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):

  def __init__(self):
    super().__init__()
    self.register_buffer("kernel", blur_kernel())

  def forward(self, x):
    return upfirdn2d(x, self.kernel, up=2, pad=(2, 1))


class ModulatedConv2d(nn.Module):
  """Per-sample modulated (and optionally demodulated) conv; `upsample` = stride-2 transposed conv + blur."""

  def __init__(self, in_channels, out_channels, kernel_size, style_dim, demodulate=True, upsample=False):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
    self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
    if upsample:
      self.blur = Blur(pad=(1, 1))
    self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
    self.demodulate = demodulate
    self.upsample = upsample

  def forward(self, x, w):
    batch, in_channels, height, width = x.shape
    styles = self.modulation(w).view(batch, 1, in_channels, 1, 1)
    weight = self.scale * self.weight * styles
    if self.demodulate:
      weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
    out_channels, size = weight.shape[1], weight.shape[-1]
    x = x.reshape(1, batch * in_channels, height, width)
    if self.upsample:
      weight = weight.transpose(1, 2).reshape(batch * in_channels, out_channels, size, size)
      out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=batch)
    else:
      weight = weight.reshape(batch * out_channels, in_channels, size, size)
      out = F.conv2d(x, weight, padding=size // 2, groups=batch)
    out = out.view(batch, out_channels, out.shape[-2], out.shape[-1])
    if self.upsample:
      out = self.blur(out)
    return out


class NoiseInjection(nn.Module):

  def __init__(self):
    super().__init__()
    self.weight = nn.Parameter(torch.zeros(1))

  def forward(self, x, noise):
    return x + self.weight * noise


class FusedLeakyReLU(nn.Module):

  def __init__(self, channels):
    super().__init__()
    self.bias = nn.Parameter(torch.zeros(channels))

  def forward(self, x):
    return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):

  def __init__(self, in_channels, out_channels, style_dim, upsample=False):
    super().__init__()
    self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
    self.noise = NoiseInjection()
    self.activate = FusedLeakyReLU(out_channels)

  def forward(self, x, w, noise):
    return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):

  def __init__(self, in_channels, style_dim, upsample=True):
    super().__init__()
    if upsample:
      self.upsample = Upsample()
    self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
    self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

  def forward(self, x, w, skip=None):
    out = self.conv(x, w) + self.bias
    if skip is not None:
      out = out + self.upsample(skip)
    return out


class ConstantInput(nn.Module):

  def __init__(self, channels, width):
    super().__init__()
    self.input = nn.Parameter(torch.randn(1, channels, 4, width))


class Generator(nn.Module):
  """rosinality Generator key layout: style.*, input.input, conv1, to_rgb1, convs.*, to_rgbs.*, noises.noise_*."""

  def __init__(self, size, style_dim=512, n_mlp=8, channel_multiplier=2, channel_divisor=1, aspect=1, lr_mlp=0.01):
    super().__init__()
    log_size = int(math.log2(size))
    self.n_latent = 2 * log_size - 2
    channels = {2**r: (512 if 2**r <= 32 else 16 * 1024 * channel_multiplier // 2**r) // channel_divisor
                for r in range(2, log_size + 1)}
    self.style = nn.Sequential(
        PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
    )
    self.input = ConstantInput(channels[4], 4 // aspect)
    self.conv1 = StyledConv(channels[4], channels[4], style_dim)
    self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)
    self.convs = nn.ModuleList()
    self.to_rgbs = nn.ModuleList()
    for r in range(3, log_size + 1):
      self.convs.append(StyledConv(channels[2 ** (r - 1)], channels[2**r], style_dim, upsample=True))
      self.convs.append(StyledConv(channels[2**r], channels[2**r], style_dim))
      self.to_rgbs.append(ToRGB(channels[2**r], style_dim))
    self.noises = nn.Module()
    for k in range(2 * log_size - 3):
      side = 2 ** ((k + 5) // 2)
      self.noises.register_buffer(f"noise_{k}", torch.randn(1, 1, side, side // aspect))

  def forward(self, w_plus):
    """w_plus: [batch, n_latent, style_dim] -> images [batch, 3, size, size // aspect]."""
    noises = [getattr(self.noises, f"noise_{k}") for k in range(len(self.convs) + 1)]
    x = self.input.input.repeat(w_plus.shape[0], 1, 1, 1)
    x = self.conv1(x, w_plus[:, 0], noises[0])
    skip = self.to_rgb1(x, w_plus[:, 1])
    for j, to_rgb in enumerate(self.to_rgbs):
      x = self.convs[2 * j](x, w_plus[:, 2 * j + 1], noises[2 * j + 1])
      x = self.convs[2 * j + 1](x, w_plus[:, 2 * j + 2], noises[2 * j + 2])
      skip = to_rgb(x, w_plus[:, 2 * j + 3], skip)
    return skip
