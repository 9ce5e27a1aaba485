"""A PyTorch VGG16 with torchvision's architecture and state-dict key layout, at any widths.

torchvision itself cannot be imported beside the project's CPU torch wheel, so this reference is written from the
facts of `torchvision/models/vgg.py` (configuration "D"): `features` is one Sequential of 3x3 convolutions (padding
1, bias) each followed by ReLU, with 2x2 max pooling after blocks of 2, 2, 3, 3 and 3 convolutions; then
`avgpool` (adaptive, 7x7) and `classifier` (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear). It works in NCHW.
"""

import torch
from torch import nn

BLOCK_DEPTHS = (2, 2, 3, 3, 3)
# features index of the ReLU that ends blocks 1-4 (relu1_2, relu2_2, relu3_3, relu4_3).
BLOCK_OUTPUTS = (3, 8, 15, 22)


class VGG16(nn.Module):

  def __init__(self, widths=(64, 128, 256, 512, 512), hidden=4096, num_classes=1000):
    super().__init__()
    layers, channels = [], 3
    for depth, width in zip(BLOCK_DEPTHS, widths):
      for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=False)]
        channels = width
      layers.append(nn.MaxPool2d(2, 2))
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(nn.Linear(channels * 49, hidden), nn.ReLU(), nn.Dropout(),
                                    nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
                                    nn.Linear(hidden, num_classes))

  def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
    """x: [n, 3, H, W] already ImageNet-normalised -> the outputs of features[BLOCK_OUTPUTS], NCHW."""
    outputs = []
    for index, layer in enumerate(self.features):
      x = layer(x)
      if index in BLOCK_OUTPUTS:
        outputs.append(x)
      if index == BLOCK_OUTPUTS[-1]:
        return outputs
    raise AssertionError("unreachable")
