"""The trainable path in PyTorch, written for `bench --part=trainable --compare_torch` only.

It follows the original VidStyleODE modules as docs/model.md §4, §7 and §8 describe them, with their layout and
numerics: channel-first tensors, the ODE-RNN, z0 head, both ODE functions and the Dopri5 solve in float64 (§4.7),
torchdiffeq's solver rules (Hairer-Wanner first step, step factor 0.9 * r^(-1/5) clipped to [0.2, 10], 4th-order
dense output), gradients through the solver's steps, the full modulation network run once per style token (self-
attention included), and two Adam groups (§13). Its parameters are copied from a tree of this project's params, so
both sides hold the same values and the same count, and their outputs can be compared. Training and inference never
import this module.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from vidstyleode_jax.models import block_scan

# Dormand-Prince 5(4): stage weights, 5th-order solution weights and the 4th-order ones.
DOPRI5_A = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
DOPRI5_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
DOPRI5_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
# Weights of the stages giving the solution at the middle of a step (Shampine's dense output, halved).
DOPRI5_MID = tuple(x / 2 for x in (
    6025192743 / 30085553152, 0.0, 51252292925 / 65400821598, -2691868925 / 45128329728,
    187940372067 / 1594534317056, -1776094331 / 19743644256, 11237099 / 235043384,
))
FLOAT64_PARTS = ("f_enc", "gru", "z0_head", "f_dec")


def _flatten(tree, prefix=()):
  for name, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, prefix + (name,))
    else:
      yield prefix + (name,), np.asarray(value)


def _torch_layout(path, value):
  """A kernel in PyTorch's layout: conv [out, in, kh, kw]; dense [in, out] (used as x @ W); heads merged."""
  if path[-1] == "bias":
    return value.reshape(-1)
  if path[-1] != "kernel":
    return value
  if value.ndim == 4:
    return value.transpose(3, 2, 0, 1)
  if value.ndim == 3 and path[-2] == "out":
    return value.reshape(-1, value.shape[-1])
  if value.ndim == 3:
    return value.reshape(value.shape[0], -1)
  return value


class TrainablePath(torch.nn.Module):
  """Dynamics encoder, latent ODE, modulation network and mapper, from this project's param tree.

  Args:
    params: the trainable params (the `params` collection's contents: dynamics, modulation, mapper), as arrays; the
      stacked blocks become one parameter per block, as in the original modules.
    config: the project config (dynamics tolerances, modulation heads, mapper groups, delta scale).
  """

  def __init__(self, params, config):
    super().__init__()
    self.config = config
    self.weights = torch.nn.ParameterDict()
    for path, value in _flatten(block_scan.unstack(params)):
      dtype = torch.float64 if path[0] == "dynamics" and path[1] in FLOAT64_PARTS else torch.float32
      tensor = torch.tensor(np.ascontiguousarray(_torch_layout(path, value)), dtype=dtype)
      self.weights["/".join(path)] = torch.nn.Parameter(tensor)

  def _p(self, *path):
    return self.weights["/".join(path)]

  def groups(self):
    """(dynamics encoder params, modulation + mapper params): the two Adam groups."""
    dynamics = [p for name, p in self.weights.items() if name.startswith("dynamics/")]
    mapping = [p for name, p in self.weights.items() if not name.startswith("dynamics/")]
    return dynamics, mapping

  # Dynamics encoder (§4), channel-first.

  def _equal_conv(self, x, *path, stride=1, bias=None):
    weight = self._p(*path, "kernel")
    return F.conv2d(x, weight / math.sqrt(weight[0].numel()), bias, stride=stride)

  def _equal_conv_lrelu(self, x, *path, stride=1):
    x = self._equal_conv(x, *path, "conv", stride=stride)
    return F.leaky_relu(x + self._p(*path, "act", "bias")[None, :, None, None], 0.2) * math.sqrt(2.0)

  def frame_encoder(self, frames):
    """frames: [n, 3, h, w] float32 -> unit-norm codes [n, c, h / 2**k, w / 2**k]."""
    p = ("dynamics", "frame_encoder")
    x = self._equal_conv_lrelu(frames, *p, "from_rgb")
    for i in range(1, self.config.dynamics.num_downsamples + 1):
      block = p + (f"block{i}",)
      main = self._equal_conv_lrelu(F.pad(x, (1, 1, 1, 1), mode="reflect"), *block, "conv1")
      main = self._equal_conv_lrelu(F.pad(main, (1, 0, 1, 0), mode="reflect"), *block, "conv2", stride=2)
      skip = self._equal_conv(x[:, :, :-1, :-1], *block, "skip", stride=2)
      x = (main + skip) / math.sqrt(2.0)
    x = self._equal_conv_lrelu(x, *p, "conv")
    x = self._equal_conv(x, *p, "to_code", bias=self._p(*p, "to_code", "bias"))
    return x / torch.sqrt((x**2).sum(dim=1, keepdim=True) + 1e-8)

  def _conv(self, x, *path):
    weight = self._p(*path, "kernel")
    return F.conv2d(x, weight, self._p(*path, "bias"), padding=weight.shape[-1] // 2)

  def ode_func(self, name, z):
    for i in range(4):
      z = self._conv(torch.tanh(z) if i else z, "dynamics", name, f"conv{i}")
    return z

  def gru(self, x, h, mask):
    reset, update = torch.sigmoid(self._conv(torch.cat([x, h], 1), "dynamics", "gru", "gates")).chunk(2, dim=1)
    candidate = torch.tanh(self._conv(torch.cat([x, reset * h], 1), "dynamics", "gru", "candidate"))
    mask = mask[:, None, None, None]
    return mask * ((1 - update) * h + update * candidate) + (1 - mask) * h

  def encode(self, frames, ts, mask):
    """frames: [b, t, 3, h, w] float32; ts: [t] float64; mask: [b, t] float64 -> z0 [b, c, h', w'] float64."""
    batch, time = frames.shape[:2]
    codes = self.frame_encoder(frames.flatten(0, 1)).unflatten(0, (batch, time)).double()
    h = torch.zeros_like(codes[:, 0])
    previous, current = ts[-1] + 0.01, ts[-1]
    for i in reversed(range(time)):
      h = self.gru(codes[:, i], h + self.ode_func("f_enc", h) * (current - previous), mask[:, i])
      previous, current = ts[i], ts[i - 1]
    channels = h.shape[1]
    head = self._conv(torch.relu(self._conv(h, "dynamics", "z0_head", "conv1")), "dynamics", "z0_head", "conv2")
    return head[:, :channels]

  # Modulation network (§7): minGPT-style attention with separate q, k, v projections.

  def _dense(self, x, *path, bias=True):
    y = x @ self._p(*path, "kernel")
    return y + self._p(*path, "bias") if bias else y

  def _layer_norm(self, x, *path):
    return F.layer_norm(x, x.shape[-1:], self._p(*path, "scale"), self._p(*path, "bias"), 1e-5)

  def _attention(self, queries, keys_values, *path):
    heads = self.config.modulation.num_heads
    split = lambda y: y.unflatten(-1, (heads, -1)).transpose(1, 2)
    q = split(self._dense(queries, *path, "query"))
    k = split(self._dense(keys_values, *path, "key"))
    v = split(self._dense(keys_values, *path, "value"))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return self._dense((weights @ v).transpose(1, 2).flatten(2), *path, "out")

  def _mlp(self, x, *path):
    return self._dense(F.gelu(self._dense(x, *path, "fc1")), *path, "fc2")

  def modulation(self, style, tokens):
    """style: [n, width]; tokens: [n, num_tokens, width] -> [n, 3, width]."""
    m, p = self.config.modulation, ("modulation",)
    y = tokens + self._p(*p, "dynamics_pos_embedding")[:, : tokens.shape[1]]
    for i in range(m.num_self_layers):
      block = p + (f"self_{i}",)
      h = self._layer_norm(y, *block, "ln_1")
      y = y + self._attention(h, h, *block, "attn")
      y = y + self._mlp(self._layer_norm(y, *block, "ln_2"), *block, "mlp")
    query = style[:, None] + self._p(*p, "style_pos_embedding")
    outputs = []
    for group in range(3):
      x = query
      for i in range(m.num_cross_layers if group < 2 else 0):
        block = p + (f"cross_{group}_{i}",)
        x = x + self._attention(self._layer_norm(x, *block, "ln_x"), self._layer_norm(y, *block, "ln_y"),
                                *block, "attn")
        x = x + self._mlp(self._layer_norm(x, *block, "ln_2"), *block, "mlp")
      x = self._layer_norm(x[:, 0], *p, f"head_ln_{group}")
      outputs.append(self._dense(x, *p, f"head_{group}", bias=False))
    return torch.stack(outputs, dim=1)

  # Mapper (§8).

  def _affine_mlp(self, c, *path):
    c = self._dense(c, *path[:-1], f"{path[-1]}_fc1")
    c = F.leaky_relu(self._layer_norm(c, *path[:-1], f"{path[-1]}_ln"), 0.01)
    return self._dense(c, *path[:-1], f"{path[-1]}_fc2")

  def mapper(self, content, conditions):
    """content: [n, layers, width]; conditions: [n, 3, width] -> delta [n, layers, width]."""
    outputs, start = [], 0
    for group, (size, depth) in enumerate(zip(self.config.mapper.group_sizes, self.config.mapper.group_depths)):
      x = content[:, start:start + size]
      x = x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)
      for i in range(depth):
        module = ("mapper", f"group_{group}_{i}")
        x = self._dense(x, *module, "fc")
        x = F.layer_norm(x, x.shape[-2:], eps=1e-5)
        gamma = self._affine_mlp(conditions[:, group], *module, "gamma")[:, None]
        beta = self._affine_mlp(conditions[:, group], *module, "beta")[:, None]
        x = x * (1 + gamma) + beta
        if i < depth - 1 or self.config.mapper.output_activation == "leaky_relu":
          x = F.leaky_relu(x, 0.01)
      outputs.append(x)
      start += size
    return torch.cat(outputs, dim=1)

  def forward(self, frames, ts, mask, query_ts, content, styles):
    """The training path with one shared solve; shapes as VidStyleODE.__call__, channel-last frames.

    Returns (w [len(styles), batch, N, n_latent, style_dim] float32, number of f_dec evaluations).
    """
    z0 = self.encode(frames.permute(0, 1, 4, 2, 3), ts.double(), mask.double())
    z_t, nfe = dopri5(lambda z: self.ode_func("f_dec", z), z0, query_ts.double(), self.config.dynamics.rtol,
                      self.config.dynamics.atol)
    tokens = F.conv2d(z_t.transpose(0, 1).flatten(0, 1).float(), self._p("dynamics", "to_tokens", "kernel"),
                      self._p("dynamics", "to_tokens", "bias"))
    tokens = tokens.flatten(2).transpose(1, 2)
    batch, frames_decoded = content.shape[0], len(query_ts)
    content_flat = content.repeat_interleave(frames_decoded, 0)
    w = []
    for style in styles:
      conditions = self.modulation(style.repeat_interleave(frames_decoded, 0), tokens)
      delta = self.mapper(content_flat, conditions)
      w.append((content_flat + self.config.mapper.delta_scale * delta).unflatten(0, (batch, frames_decoded)))
    return torch.stack(w), nfe


def _rms(x):
  """The RMS of x as a float; step-size control takes no gradient."""
  return torch.sqrt(torch.mean(x.detach() ** 2)).item()


def dopri5(func, y0, ts, rtol, atol):
  """Adaptive Dormand-Prince from y(ts[0]) = y0, read at every ts; gradients flow through the steps.

  Returns ([n, *y0.shape], number of func evaluations).
  """
  f0 = func(y0)
  with torch.no_grad():  # the first step size (Hairer-Wanner), as torchdiffeq picks it
    scale = atol + torch.abs(y0) * rtol
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    d2 = _rms((func(y0 + h0 * f0) - f0) / scale) / h0
  nfe = 2
  max_d = max(d1, d2)
  h1 = max(1e-6, h0 * 1e-3) if max_d <= 1e-15 else (0.01 / max_d) ** (1 / 5)
  dt = min(100 * h0, h1)

  t0, y, f = float(ts[0]), y0, f0
  times = ts.tolist()
  outputs = [y0]
  while len(outputs) < len(times):
    stages = [f]
    for a in DOPRI5_A:
      stages.append(func(y + dt * sum(ai * k for ai, k in zip(a, stages) if ai)))
    nfe += 6
    y_next = y + dt * sum(b * k for b, k in zip(DOPRI5_B, stages) if b)
    error = dt * sum((b - b4) * k for b, b4, k in zip(DOPRI5_B, DOPRI5_B4, stages))
    ratio = _rms(error / (atol + rtol * torch.maximum(torch.abs(y), torch.abs(y_next))))
    if ratio <= 1:
      y_mid = y + dt * sum(m * k for m, k in zip(DOPRI5_MID, stages) if m)
      while len(outputs) < len(times) and times[len(outputs)] <= t0 + dt:
        x = (times[len(outputs)] - t0) / dt
        outputs.append(_interpolate(y, y_mid, y_next, stages[0], stages[-1], dt, x))
      t0, y, f = t0 + dt, y_next, stages[-1]
    dt = dt * (10.0 if ratio == 0 else min(10.0, max(0.9 * ratio ** (-1 / 5), 0.2 if ratio > 1 else 1.0)))
  return torch.stack(outputs), nfe


def _interpolate(y0, y_mid, y1, f0, f1, dt, x):
  """The quartic through y0, y_mid, y1 with slopes f0, f1, at x = (t - t0) / dt in [0, 1]."""
  a = 2 * dt * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
  b = dt * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
  c = dt * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
  return (((a * x + b) * x + c) * x + dt * f0) * x + y0
