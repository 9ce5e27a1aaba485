"""A small PyTorch StyleGAN2-ADA / StyleGAN-Human generator in NVlabs' module layout, and its network pickle.

Written from docs/weight_formats.md §2 (no NVIDIA code): the module tree reproduces the attribute names, parameters and
buffers of `G_ema` (§2.2), and the forward pass follows the NV numerics of §2.3 literally: raw conv weights times
styles with demodulation and no fan-in factor, per-sample convs, the up-sampling conv as a stride-2
`conv_transpose2d` followed by the 4x-gain FIR with pad (1, 1), noise `noise_const * noise_strength` before the bias,
`bias_act` (+bias, lrelu 0.2, x sqrt(2)) and the clamp to +-conv_clamp. Channels: min(channel_base // r, channel_max).

`write_network_pickle` writes the §2.7 fixture: fake `torch_utils.persistence` and `dnnlib.util` modules exist only
while pickling, so the file references the same globals as a real snapshot, and every module is stored as a
persistent-object record {type, version, module_src, class_name, state}.
"""

import contextlib
import math
import pickle
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tests.reference.rosinality_stylegan2 import upfirdn2d

NV_CLASS_NAMES = ("Generator", "MappingNetwork", "FullyConnectedLayer", "SynthesisNetwork", "SynthesisBlock",
                  "SynthesisLayer", "ToRGBLayer")
MODULE_SRC = "import torch\n" + "".join(f"class {name}(torch.nn.Module):\n  pass\n" for name in NV_CLASS_NAMES)


def setup_filter() -> torch.Tensor:
  """NV `upfirdn2d.setup_filter([1, 3, 3, 1])`: outer product normalised to sum 1, [4, 4]."""
  taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
  kernel = taps[:, None] * taps[None, :]
  return kernel / kernel.sum()


def bias_act(x: torch.Tensor, bias: torch.Tensor, lrelu: bool, clamp: float | None) -> torch.Tensor:
  """x + bias (over dim 1), then lrelu(0.2) * sqrt(2) if `lrelu`, then clamp to [-clamp, clamp] if set."""
  x = x + bias.view((1, -1) + (1,) * (x.ndim - 2))
  if lrelu:
    x = F.leaky_relu(x, 0.2) * math.sqrt(2)
  return x if clamp is None else x.clamp(-clamp, clamp)


class FullyConnectedLayer(nn.Module):

  def __init__(self, in_features, out_features, bias_init=0.0, lr_multiplier=1.0, activation="linear"):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
    self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
    self.activation = activation
    self.weight_gain = lr_multiplier / math.sqrt(in_features)
    self.bias_gain = lr_multiplier

  def forward(self, x):
    return bias_act(x @ (self.weight * self.weight_gain).t(), self.bias * self.bias_gain,
                    self.activation == "lrelu", None)


class MappingNetwork(nn.Module):

  def __init__(self, z_dim, w_dim, num_ws, num_layers, lr_multiplier=0.01):
    super().__init__()
    self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
    for i in range(num_layers):
      in_features = z_dim if i == 0 else w_dim
      setattr(self, f"fc{i}", FullyConnectedLayer(in_features, w_dim, lr_multiplier=lr_multiplier,
                                                  activation="lrelu"))
    self.register_buffer("w_avg", torch.zeros(w_dim))

  def forward(self, z):
    """z: [batch, z_dim] -> w: [batch, w_dim] (not broadcast to num_ws rows)."""
    x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    for i in range(self.num_layers):
      x = getattr(self, f"fc{i}")(x)
    return x


def modulated_conv(x, weight, styles, demodulate, up):
  """x: [batch, in, h, w]; weight: [out, in, k, k]; styles: [batch, in] -> per-sample conv, NV numerics."""
  outputs = []
  for b in range(x.shape[0]):
    w_hat = weight * styles[b][None, :, None, None]
    if demodulate:
      w_hat = w_hat * (w_hat.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt()
    if up:
      out = F.conv_transpose2d(x[b: b + 1], w_hat.transpose(0, 1), stride=2)
      out = upfirdn2d(out, setup_filter() * 4, pad=(1, 1))
    else:
      out = F.conv2d(x[b: b + 1], w_hat, padding=weight.shape[-1] // 2)
    outputs.append(out)
  return torch.cat(outputs)


class SynthesisLayer(nn.Module):

  def __init__(self, in_channels, out_channels, w_dim, resolution, aspect, up=1, conv_clamp=None):
    super().__init__()
    self.resolution, self.up, self.padding, self.conv_clamp = resolution, up, 1, conv_clamp
    self.activation = "lrelu"
    self.act_gain = np.float64(math.sqrt(2))  # a NumPy scalar, as in real snapshots
    self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
    self.register_buffer("resample_filter", setup_filter())
    self.register_buffer("noise_const", torch.randn(resolution, resolution // aspect))
    self.noise_strength = nn.Parameter(torch.zeros([]))
    self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
    self.bias = nn.Parameter(torch.zeros(out_channels))

  def forward(self, x, w):
    x = modulated_conv(x, self.weight, self.affine(w), demodulate=True, up=self.up == 2)
    x = x + self.noise_const * self.noise_strength
    return bias_act(x, self.bias, True, self.conv_clamp)


class ToRGBLayer(nn.Module):

  def __init__(self, in_channels, out_channels, w_dim, conv_clamp=None):
    super().__init__()
    self.conv_clamp = conv_clamp
    self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
    self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
    self.bias = nn.Parameter(torch.zeros(out_channels))
    self.weight_gain = 1 / math.sqrt(in_channels)

  def forward(self, x, w):
    x = modulated_conv(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False, up=False)
    return bias_act(x, self.bias, False, self.conv_clamp)


class SynthesisBlock(nn.Module):

  def __init__(self, in_channels, out_channels, w_dim, resolution, aspect, conv_clamp=None):
    super().__init__()
    self.in_channels, self.resolution, self.architecture = in_channels, resolution, "skip"
    self.register_buffer("resample_filter", setup_filter())
    if in_channels == 0:
      self.const = nn.Parameter(torch.randn(out_channels, 4, 4 // aspect))
    else:
      self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, aspect, up=2, conv_clamp=conv_clamp)
    self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, aspect, conv_clamp=conv_clamp)
    self.torgb = ToRGBLayer(out_channels, 3, w_dim, conv_clamp=conv_clamp)
    self.num_conv = 1 if in_channels == 0 else 2

  def forward(self, x, img, ws):
    """ws: [batch, num_conv + 1, w_dim], the rows of this block."""
    if self.in_channels == 0:
      x = self.const[None].repeat(ws.shape[0], 1, 1, 1)
      x = self.conv1(x, ws[:, 0])
    else:
      x = self.conv0(x, ws[:, 0])
      x = self.conv1(x, ws[:, 1])
    if img is not None:
      img = upfirdn2d(img, self.resample_filter * 4, up=2, pad=(2, 1))
    y = self.torgb(x, ws[:, self.num_conv])
    return x, y if img is None else img + y


class SynthesisNetwork(nn.Module):

  def __init__(self, w_dim, img_resolution, aspect, channel_base, channel_max, conv_clamp=None):
    super().__init__()
    self.w_dim, self.img_resolution = w_dim, img_resolution
    self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
    channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
    for r in self.block_resolutions:
      in_channels = channels[r // 2] if r > 4 else 0
      setattr(self, f"b{r}", SynthesisBlock(in_channels, channels[r], w_dim, r, aspect, conv_clamp=conv_clamp))
    self.num_ws = 2 * len(self.block_resolutions)

  def forward(self, ws):
    """ws: [batch, num_ws, w_dim] -> images [batch, 3, img_resolution, img_resolution // aspect]."""
    x = img = None
    w_idx = 0
    for r in self.block_resolutions:
      block = getattr(self, f"b{r}")
      x, img = block(x, img, ws[:, w_idx: w_idx + block.num_conv + 1])
      w_idx += block.num_conv
    return img


class Generator(nn.Module):
  """`G_ema` of StyleGAN2-ADA with StyleGAN-Human's `square` switch (aspect 2 = not square)."""

  def __init__(self, z_dim, w_dim, img_resolution, aspect=1, num_mapping_layers=8, channel_base=32768,
               channel_max=512, conv_clamp=None):
    super().__init__()
    self.z_dim, self.c_dim, self.w_dim, self.img_resolution, self.img_channels = z_dim, 0, w_dim, img_resolution, 3
    self.synthesis = SynthesisNetwork(w_dim, img_resolution, aspect, channel_base, channel_max, conv_clamp)
    self.num_ws = self.synthesis.num_ws
    self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, num_mapping_layers)
    self.init_kwargs = dict(
        z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=img_resolution, img_channels=3, square=aspect == 1,
        mapping_kwargs=dict(num_layers=num_mapping_layers),
        synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=4,
                              conv_clamp=conv_clamp),
    )

  def forward(self, ws):
    return self.synthesis(ws)


def randomize_(module: nn.Module, generator: torch.Generator) -> None:
  """Adds N(0, 0.5^2) to the zero-initialised tensors (biases, noise strengths, w_avg) so that they are tested."""
  with torch.no_grad():
    for name, tensor in module.state_dict().items():
      if name.endswith(("bias", "noise_strength", "w_avg")):
        tensor.add_(0.5 * torch.randn(tensor.shape, generator=generator))


class _Persistent:
  """Pickles like an NV persistent object: `_reconstruct_persistent_obj(meta)` with the module's state."""

  def __init__(self, reconstruct, meta):
    self.reconstruct, self.meta = reconstruct, meta

  def __reduce__(self):
    return self.reconstruct, (self.meta,)


@contextlib.contextmanager
def _fake_nv_modules():
  """Puts `torch_utils.persistence` and `dnnlib.util` into sys.modules while the pickle is written."""
  names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
  saved = {name: sys.modules.get(name) for name in names}
  modules = {name: types.ModuleType(name) for name in names}

  def _reconstruct_persistent_obj(meta):
    raise AssertionError("only used for pickling")

  _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
  _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
  easy_dict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
  modules["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
  modules["dnnlib.util"].EasyDict = easy_dict
  sys.modules.update(modules)
  try:
    yield _reconstruct_persistent_obj, easy_dict
  finally:
    for name, module in saved.items():
      if module is None:
        sys.modules.pop(name)
      else:
        sys.modules[name] = module


def _to_easy_dict(value, easy_dict):
  if isinstance(value, dict):
    return easy_dict({key: _to_easy_dict(item, easy_dict) for key, item in value.items()})
  return value


def _wrap(module: nn.Module, reconstruct, easy_dict, init_kwargs=None):
  state = dict(module.__dict__)
  state["_modules"] = {name: _wrap(child, reconstruct, easy_dict) for name, child in module._modules.items()}
  state.pop("init_kwargs", None)
  state["_init_args"] = ()
  state["_init_kwargs"] = _to_easy_dict(init_kwargs or {}, easy_dict)
  meta = dict(type="class", version=6, module_src=MODULE_SRC, class_name=type(module).__name__, state=state)
  return _Persistent(reconstruct, meta)


def write_network_pickle(path: str, g_ema: Generator, extra_networks: dict | None = None) -> None:
  """pickle.dump({'G_ema', 'training_set_kwargs', 'augment_pipe'[, extra_networks]}) in the NV snapshot format."""
  with _fake_nv_modules() as (reconstruct, easy_dict):
    snapshot = {
        "G_ema": _wrap(g_ema, reconstruct, easy_dict, g_ema.init_kwargs),
        "training_set_kwargs": easy_dict(resolution=g_ema.img_resolution, use_labels=False),
        "augment_pipe": None,
    }
    for name, network in (extra_networks or {}).items():
      snapshot[name] = _wrap(network, reconstruct, easy_dict, getattr(network, "init_kwargs", None))
    with open(path, "wb") as f:
      pickle.dump(snapshot, f)
