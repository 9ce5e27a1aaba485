"""A PyTorch RAFT with torchvision's raft_large / raft_small architectures and state-dict key layout.

torchvision itself cannot be imported beside the project's CPU torch wheel (its compiled operators fail to load), so
this reference is written from the facts of `torchvision/models/optical_flow/raft.py` (0.28): conv-norm-ReLU units
as Sequentials (conv at index 0, norm at 1), InstanceNorm without affine in the feature encoder, BatchNorm (large)
or no norm (small) in the context encoder, the all-pairs correlation over sqrt(channels) pooled 2x2 per level and
sampled with `grid_sample(align_corners=True)` around the current match, ConvGRU updates, and convex (large) or
bilinear (small) 8x upsampling. It works in NCHW, as torchvision does, and returns the final flow only.
"""

import torch
import torch.nn.functional as F
from torch import nn

LARGE = dict(block="residual", feature_layers=(64, 64, 96, 128, 256), context_layers=(64, 64, 96, 128, 256),
             context_norm="batch", radius=4, corr_layers=(256, 192), flow_layers=(128, 64), motion_out=128,
             hidden=128, gru_kernels=((1, 5), (5, 1)), head_hidden=256, mask=True)
SMALL = dict(block="bottleneck", feature_layers=(32, 32, 64, 96, 128), context_layers=(32, 32, 64, 96, 160),
             context_norm=None, radius=3, corr_layers=(96,), flow_layers=(64, 32), motion_out=82, hidden=96,
             gru_kernels=((3, 3),), head_hidden=128, mask=False)
LEVELS = 4


def conv_norm_relu(in_channels, out_channels, kernel, stride=1, norm=None, relu=True) -> nn.Sequential:
  layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2)]
  if norm == "batch":
    layers.append(nn.BatchNorm2d(out_channels))
  elif norm == "instance":
    layers.append(nn.InstanceNorm2d(out_channels))
  if relu:
    layers.append(nn.ReLU())
  return nn.Sequential(*layers)


class ResidualBlock(nn.Module):

  def __init__(self, in_channels, out_channels, norm, stride):
    super().__init__()
    self.convnormrelu1 = conv_norm_relu(in_channels, out_channels, 3, stride, norm)
    self.convnormrelu2 = conv_norm_relu(out_channels, out_channels, 3, 1, norm)
    self.downsample = conv_norm_relu(in_channels, out_channels, 1, stride, norm, False) if stride != 1 else None

  def forward(self, x):
    y = self.convnormrelu2(self.convnormrelu1(x))
    return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class BottleneckBlock(nn.Module):

  def __init__(self, in_channels, out_channels, norm, stride):
    super().__init__()
    self.convnormrelu1 = conv_norm_relu(in_channels, out_channels // 4, 1, 1, norm)
    self.convnormrelu2 = conv_norm_relu(out_channels // 4, out_channels // 4, 3, stride, norm)
    self.convnormrelu3 = conv_norm_relu(out_channels // 4, out_channels, 1, 1, norm)
    self.downsample = conv_norm_relu(in_channels, out_channels, 1, stride, norm, False) if stride != 1 else None

  def forward(self, x):
    y = self.convnormrelu3(self.convnormrelu2(self.convnormrelu1(x)))
    return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class FeatureEncoder(nn.Module):

  def __init__(self, block, layers, norm):
    super().__init__()
    block = ResidualBlock if block == "residual" else BottleneckBlock
    self.convnormrelu = conv_norm_relu(3, layers[0], 7, 2, norm)
    for stage, stride in zip((1, 2, 3), (1, 2, 2)):
      setattr(self, f"layer{stage}", nn.Sequential(block(layers[stage - 1], layers[stage], norm, stride),
                                                   block(layers[stage], layers[stage], norm, 1)))
    self.conv = nn.Conv2d(layers[3], layers[4], 1)

  def forward(self, x):
    return self.conv(self.layer3(self.layer2(self.layer1(self.convnormrelu(x)))))


class MotionEncoder(nn.Module):

  def __init__(self, corr_channels, corr_layers, flow_layers, out_channels):
    super().__init__()
    self.convcorr1 = conv_norm_relu(corr_channels, corr_layers[0], 1)
    self.convcorr2 = conv_norm_relu(corr_layers[0], corr_layers[1], 3) if len(corr_layers) == 2 else nn.Identity()
    self.convflow1 = conv_norm_relu(2, flow_layers[0], 7)
    self.convflow2 = conv_norm_relu(flow_layers[0], flow_layers[1], 3)
    self.conv = conv_norm_relu(corr_layers[-1] + flow_layers[1], out_channels - 2, 3)

  def forward(self, flow, corr):
    corr = self.convcorr2(self.convcorr1(corr))
    encoded = self.convflow2(self.convflow1(flow))
    return torch.cat([self.conv(torch.cat([corr, encoded], 1)), flow], 1)


class ConvGRU(nn.Module):

  def __init__(self, input_size, hidden_size, kernel):
    super().__init__()
    padding = (kernel[0] // 2, kernel[1] // 2)
    self.convz = nn.Conv2d(hidden_size + input_size, hidden_size, kernel, padding=padding)
    self.convr = nn.Conv2d(hidden_size + input_size, hidden_size, kernel, padding=padding)
    self.convq = nn.Conv2d(hidden_size + input_size, hidden_size, kernel, padding=padding)

  def forward(self, h, x):
    hx = torch.cat([h, x], 1)
    z, r = torch.sigmoid(self.convz(hx)), torch.sigmoid(self.convr(hx))
    return (1 - z) * h + z * torch.tanh(self.convq(torch.cat([r * h, x], 1)))


class RecurrentBlock(nn.Module):

  def __init__(self, input_size, hidden_size, kernels):
    super().__init__()
    self.grus = [ConvGRU(input_size, hidden_size, kernel) for kernel in kernels]
    for index, gru in enumerate(self.grus):
      self.add_module(f"convgru{index + 1}", gru)

  def forward(self, h, x):
    for gru in self.grus:
      h = gru(h, x)
    return h


class FlowHead(nn.Module):

  def __init__(self, in_channels, hidden):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1)
    self.conv2 = nn.Conv2d(hidden, 2, 3, padding=1)

  def forward(self, x):
    return self.conv2(F.relu(self.conv1(x)))


class UpdateBlock(nn.Module):

  def __init__(self, c):
    super().__init__()
    corr_channels = LEVELS * (2 * c["radius"] + 1)**2
    self.motion_encoder = MotionEncoder(corr_channels, c["corr_layers"], c["flow_layers"], c["motion_out"])
    context_channels = c["context_layers"][-1] - c["hidden"]
    self.recurrent_block = RecurrentBlock(c["motion_out"] + context_channels, c["hidden"], c["gru_kernels"])
    self.flow_head = FlowHead(c["hidden"], c["head_hidden"])

  def forward(self, hidden, context, corr, flow):
    hidden = self.recurrent_block(hidden, torch.cat([context, self.motion_encoder(flow, corr)], 1))
    return hidden, self.flow_head(hidden)


class MaskPredictor(nn.Module):

  def __init__(self, in_channels):
    super().__init__()
    self.convrelu = conv_norm_relu(in_channels, 256, 3)
    self.conv = nn.Conv2d(256, 8 * 8 * 9, 1)

  def forward(self, x):
    return 0.25 * self.conv(self.convrelu(x))


def sample(image, x, y):
  """grid_sample at absolute pixel coordinates, align_corners=True, zeros outside (torchvision's helper)."""
  h, w = image.shape[-2:]
  grid = torch.stack([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
  return F.grid_sample(image, grid, mode="bilinear", align_corners=True)


class RAFT(nn.Module):

  def __init__(self, config):
    super().__init__()
    self.config = config
    self.feature_encoder = FeatureEncoder(config["block"], config["feature_layers"], "instance")
    self.context_encoder = FeatureEncoder(config["block"], config["context_layers"], config["context_norm"])
    self.update_block = UpdateBlock(config)
    self.mask_predictor = MaskPredictor(config["hidden"]) if config["mask"] else None

  def forward(self, image1, image2, num_flow_updates: int):
    """image1, image2: [batch, 3, height, width] in [-1, 1] -> final flow [batch, 2, height, width]."""
    batch, _, height, width = image1.shape
    f1, f2 = self.feature_encoder(torch.cat([image1, image2])).chunk(2)
    channels, h, w = f1.shape[1:]
    corr = torch.einsum("bcij,bckl->bijkl", f1, f2) / channels**0.5
    pyramid = [corr.reshape(batch * h * w, 1, h, w)]
    for _ in range(LEVELS - 1):
      pyramid.append(F.avg_pool2d(pyramid[-1], 2, 2))
    context = self.context_encoder(image1)
    hidden_size = self.config["hidden"]
    hidden, context = torch.tanh(context[:, :hidden_size]), F.relu(context[:, hidden_size:])
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    coords0 = torch.stack([xs, ys])[None].repeat(batch, 1, 1, 1)
    coords1 = coords0.clone()
    radius = self.config["radius"]
    offsets = torch.linspace(-radius, radius, 2 * radius + 1)
    for _ in range(num_flow_updates):
      centre = coords1.permute(0, 2, 3, 1).reshape(batch * h * w, 1, 1, 2)
      features = []
      for level, volume in enumerate(pyramid):
        x = centre[..., 0] / 2**level + offsets[:, None]
        y = centre[..., 1] / 2**level + offsets[None, :]
        features.append(sample(volume, *torch.broadcast_tensors(x, y)).reshape(batch, h, w, -1))
      corr_features = torch.cat(features, -1).permute(0, 3, 1, 2)
      hidden, delta = self.update_block(hidden, context, corr_features, coords1 - coords0)
      coords1 = coords1 + delta
    flow = coords1 - coords0
    if self.mask_predictor is None:
      return 8 * F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=True)
    mask = torch.softmax(self.mask_predictor(hidden).view(batch, 1, 9, 8, 8, h, w), dim=2)
    neighbours = F.unfold(8 * flow, kernel_size=3, padding=1).view(batch, 2, 9, 1, 1, h, w)
    upsampled = (mask * neighbours).sum(dim=2)
    return upsampled.permute(0, 1, 4, 2, 5, 3).reshape(batch, 2, 8 * h, 8 * w)
