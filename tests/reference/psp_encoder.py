"""A small PyTorch pSp in pixel2style2pixel's exact state-dict key layout (docs/weight_formats.md §3.2, §3.5).

Written from the specification, for parity tests and checkpoint fixtures. `GradualStyleEncoder` is the IR-SE50
backbone (24 bottleneck units, 3/4/14/3 per stage, taps after units 6, 20 and 23) with a feature pyramid and one
GradualStyleBlock per W+ row; the stage depths are a constructor argument so that fixtures stay tiny. `PSP` holds
the encoder and a rosinality decoder under the attribute names `encoder` / `decoder`, so its state dict has pSp's
`encoder.*` / `decoder.*` keys, and keeps `latent_avg` as a plain attribute as pSp does. Tensors are NCHW.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from tests.reference.rosinality_stylegan2 import EqualLinear

IR_SE50_UNITS = (3, 4, 14, 3)
TAPS = (6, 20, 23)
# randomize_: weight std = gain / sqrt(fan_in) in the backbone and in the style blocks; least BN running variance.
BODY_GAIN, STYLE_GAIN, MIN_RUNNING_VAR = 0.35, 1.0, 0.1  # body indices whose outputs are c1, c2, c3


class SEModule(nn.Module):

  def __init__(self, channels, reduction=16):
    super().__init__()
    self.avg_pool = nn.AdaptiveAvgPool2d(1)
    self.fc1 = nn.Conv2d(channels, channels // reduction, 1, padding=0, bias=False)
    self.relu = nn.ReLU(inplace=True)
    self.fc2 = nn.Conv2d(channels // reduction, channels, 1, padding=0, bias=False)
    self.sigmoid = nn.Sigmoid()

  def forward(self, x):
    return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIRSE(nn.Module):
  """res_layer = BN, conv3x3, PReLU, conv3x3(stride), BN, SE; shortcut = MaxPool2d(1, stride) or conv1x1 + BN."""

  def __init__(self, in_channels, depth, stride):
    super().__init__()
    if in_channels == depth:
      self.shortcut_layer = nn.MaxPool2d(1, stride)
    else:
      self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
    self.res_layer = nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
        nn.PReLU(depth),
        nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
        nn.BatchNorm2d(depth),
        SEModule(depth),
    )

  def forward(self, x):
    return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
  """log2(spatial) x [conv3x3 stride 2 pad 1, LeakyReLU(0.01)], flatten, EqualLinear."""

  def __init__(self, in_channels, out_channels, spatial):
    super().__init__()
    self.out_channels = out_channels
    layers = [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.LeakyReLU()]
    for _ in range(int(math.log2(spatial)) - 1):
      layers += [nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1), nn.LeakyReLU()]
    self.convs = nn.Sequential(*layers)
    self.linear = EqualLinear(out_channels, out_channels, lr_mul=1.0)

  def forward(self, x):
    return self.linear(self.convs(x).view(-1, self.out_channels))


class GradualStyleEncoder(nn.Module):
  """IR-SE50 + FPN + GradualStyleBlocks: images [batch, input_nc, 256, 256] -> codes [batch, n_styles, depths[3]]."""

  def __init__(self, depths=(64, 128, 256, 512), n_styles=18, input_nc=3):
    super().__init__()
    self.input_layer = nn.Sequential(nn.Conv2d(input_nc, depths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(depths[0]),
                                     nn.PReLU(depths[0]))
    units = []
    in_channels = depths[0]
    for depth, count in zip(depths, IR_SE50_UNITS):
      for unit in range(count):
        units.append(BottleneckIRSE(in_channels, depth, 2 if unit == 0 else 1))
        in_channels = depth
    self.body = nn.Sequential(*units)
    self.styles = nn.ModuleList()
    self.coarse_ind, self.middle_ind = 3, 7
    for i in range(n_styles):
      spatial = 16 if i < self.coarse_ind else 32 if i < self.middle_ind else 64
      self.styles.append(GradualStyleBlock(depths[3], depths[3], spatial))
    self.latlayer1 = nn.Conv2d(depths[2], depths[3], 1)
    self.latlayer2 = nn.Conv2d(depths[1], depths[3], 1)

  @staticmethod
  def upsample_add(x, y):
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

  def forward(self, x):
    x = self.input_layer(x)
    for i, unit in enumerate(self.body):
      x = unit(x)
      if i == TAPS[0]:
        c1 = x
      elif i == TAPS[1]:
        c2 = x
      elif i == TAPS[2]:
        c3 = x
    codes = [self.styles[j](c3) for j in range(self.coarse_ind)]
    p2 = self.upsample_add(c3, self.latlayer1(c2))
    codes += [self.styles[j](p2) for j in range(self.coarse_ind, self.middle_ind)]
    p1 = self.upsample_add(p2, self.latlayer2(c1))
    codes += [self.styles[j](p1) for j in range(self.middle_ind, len(self.styles))]
    return torch.stack(codes, dim=1)


class PSP(nn.Module):
  """`encoder` + `decoder` modules; `encode` adds latent_avg (repeated over the batch) when it is set."""

  def __init__(self, encoder, decoder, latent_avg=None):
    super().__init__()
    self.encoder = encoder
    self.decoder = decoder
    self.latent_avg = latent_avg

  def encode(self, images):
    codes = self.encoder(images)
    if self.latent_avg is not None:
      codes = codes + self.latent_avg.repeat(codes.shape[0], 1, 1)
    return codes


def randomize_(module: nn.Module, generator: torch.Generator) -> None:
  """Redraws every tensor so that each one shows in the output.

  Conv and linear weights get std 1/sqrt(fan_in), so the residual branches are as large as the shortcuts (PyTorch's
  default init makes them ~10x smaller); BN statistics, BN affines, PReLU slopes and biases get random values (their
  defaults would hide their use), the BN variances small enough that the epsilon matters. The squeeze-excitation
  fc1 weights are positive and the BN before it has a positive bias, so that its ReLU is on (a ReLU that is always
  off, likely with depth // 16 = 1 hidden unit, would hide fc1 and fc2).
  """
  with torch.no_grad():
    for name, value in module.state_dict().items():
      if name.endswith("num_batches_tracked"):
        continue
      if name.endswith("res_layer.4.bias"):
        value.copy_(1.0 + 0.3 * torch.randn(value.shape, generator=generator))
      elif name.endswith("res_layer.5.fc1.weight"):
        value.copy_(torch.randn(value.shape, generator=generator).abs() / math.sqrt(value[0].numel()))
      elif name.endswith("running_var"):
        value.copy_(MIN_RUNNING_VAR + torch.rand(value.shape, generator=generator))
      elif name.endswith(("running_mean", "bias")):
        value.copy_(0.3 * torch.randn(value.shape, generator=generator))
      elif value.ndim == 1:  # BatchNorm weight, PReLU slope
        value.copy_(0.5 + 0.5 * torch.rand(value.shape, generator=generator))
      elif name.endswith("linear.weight"):  # EqualLinear: N(0, 1), scaled at run time
        value.copy_(torch.randn(value.shape, generator=generator))
      else:
        gain = STYLE_GAIN if name.startswith("styles.") else BODY_GAIN
        value.copy_(torch.randn(value.shape, generator=generator) * gain / math.sqrt(value[0].numel()))
