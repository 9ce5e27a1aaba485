"""Dynamics encoder: per-frame ResNet codes, a masked ConvGRU ODE-RNN run backwards in time, and a latent ODE.

docs/model.md §4. A clip of frames becomes one spatial state z0 [batch, h', w', C]; the decoder ODE dz/dt = f_dec(z)
carries it to any requested times, and a 1x1 convolution turns each cell of the h' x w' grid into a token.
`kind` picks the decoder (docs/model.md §21): "ode" (the paper's), "ode2" (second order: the state is (z, v) with
dz/dt = v, dv/dt = f_dec(z, v)) or "lstm" (a two-layer ConvLSTM stepped once per query time, paper Table 4).
Unlike the original (float64), everything runs in the dtype of the inputs and parameters, float32 by default
(docs/design.md §2; docs/ode_float32.md measures the difference).
All tensors are channel-last.
"""

import functools
import math
from typing import Callable

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax.models.layers import Conv, EqualConv2d, FusedLeakyReLU

# The ODE-RNN's first Euler step runs from this far after the last frame back to the last frame (§4.5).
FIRST_STEP_OFFSET = 0.01
# Dopri5 evaluates the vector field 6 times per attempted step; its 7th stage is reused by the next step (FSAL).
DOPRI5_EVALS_PER_STEP = 6
KINDS = ("ode", "ode2", "lstm")
LSTM_LAYERS = 2  # the ConvLSTM that replaces the latent ODE in paper Table 4


class EqualConvLReLU(nn.Module):
  """Equalised-lr convolution without bias (no padding), then FusedLeakyReLU with its own per-channel bias."""

  features: int
  kernel_size: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):
    x = EqualConv2d(self.features, self.kernel_size, stride=self.stride, name="conv")(x)
    return FusedLeakyReLU(name="act")(x)


class ResBlock(nn.Module):
  """Halves height and width: (main + skip) / sqrt(2), reflection padding, no blur."""

  features: int

  @nn.compact
  def __call__(self, x):
    """x: [batch, h, w, c_in] -> [batch, h // 2, w // 2, features]."""
    main = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    main = EqualConvLReLU(x.shape[-1], 3, name="conv1")(main)
    main = jnp.pad(main, ((0, 0), (1, 0), (1, 0), (0, 0)), mode="reflect")
    main = EqualConvLReLU(self.features, 3, stride=2, name="conv2")(main)
    skip = EqualConv2d(self.features, 1, name="skip")(x[:, :-1:2, :-1:2])
    return (main + skip) / math.sqrt(2.0)


class ResnetEncoder(nn.Module):
  """Swapping-Autoencoder style frame encoder (§4.2): widths base_channels * 2**i for i = 0..num_downsamples."""

  base_channels: int = 32
  num_downsamples: int = 4
  out_channels: int = 256

  @nn.compact
  def __call__(self, frames):
    """frames: [batch, h, w, 3] in [0, 1] -> codes [batch, h / 2**n, w / 2**n, out_channels], n = num_downsamples.

    Each code vector has unit L2 norm over channels.
    """
    x = EqualConvLReLU(self.base_channels, 1, name="from_rgb")(frames)
    for i in range(1, self.num_downsamples + 1):
      x = ResBlock(self.base_channels * 2**i, name=f"block{i}")(x)
    x = EqualConvLReLU(x.shape[-1], 1, name="conv")(x)
    x = EqualConv2d(self.out_channels, 1, use_bias=True, name="to_code")(x)
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + 1e-8)


class ODEFunc(nn.Module):
  """Autonomous vector field f(z) (§4.3): four 3x3 convolutions with tanh between them."""

  channels: int
  hidden_channels: int = 128

  @nn.compact
  def __call__(self, z):
    """z: [batch, h', w', channels] -> dz/dt, same shape."""
    x = z
    widths = (self.hidden_channels,) * 3 + (self.channels,)
    for i, features in enumerate(widths):
      if i > 0:
        x = jnp.tanh(x)
      x = Conv(features, 3, name=f"conv{i}")(x)
    return x


class ConvGRUCell(nn.Module):
  """Convolutional GRU (§4.4) whose update is blended with the incoming state by an observation mask."""

  @nn.compact
  def __call__(self, x, h, mask):
    """x: [batch, h', w', c_in]; h: [batch, h', w', c]; mask: [batch] in {0, 1} -> new h [batch, h', w', c].

    A video with mask 0 keeps h unchanged (bit for bit), whatever x holds.
    """
    channels = h.shape[-1]
    gates = nn.sigmoid(Conv(2 * channels, 3, name="gates")(jnp.concatenate([x, h], axis=-1)))
    reset, update = jnp.split(gates, 2, axis=-1)
    candidate = Conv(channels, 3, name="candidate")(jnp.concatenate([x, reset * h], axis=-1))
    h_new = (1 - update) * h + update * jnp.tanh(candidate)
    mask = mask.astype(h.dtype)[:, None, None, None]
    return mask * h_new + (1 - mask) * h


class Z0Head(nn.Module):
  """1x1 conv -> ReLU -> 1x1 conv to 2C channels, of which the first C (or all 2C) are the initial state.

  A first-order decoder keeps the first half, z0, and drops the second (the original's unused "std" output, §19.6),
  computed so that ported weights fit; the second-order decoder keeps both halves as (z0, v0).
  """

  keep_both_halves: bool = False

  @nn.compact
  def __call__(self, h):
    """h: [batch, h', w', c] -> [batch, h', w', c], or [batch, h', w', 2c] with keep_both_halves."""
    channels = h.shape[-1]
    x = nn.relu(Conv(channels, 1, name="conv1")(h))
    x = Conv(2 * channels, 1, name="conv2")(x)
    return x if self.keep_both_halves else x[..., :channels]


class ConvLSTMCell(nn.Module):
  """Convolutional LSTM cell: one 3x3 convolution of [x, h] gives the input, forget, output and candidate gates."""

  @nn.compact
  def __call__(self, x, state):
    """x: [batch, h', w', c_in]; state: (h, c), each [batch, h', w', c] -> the new (h, c)."""
    h, c = state
    gates = Conv(4 * h.shape[-1], 3, name="gates")(jnp.concatenate([x, h], axis=-1))
    input_gate, forget_gate, output_gate, candidate = jnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(forget_gate) * c + nn.sigmoid(input_gate) * jnp.tanh(candidate)
    return nn.sigmoid(output_gate) * jnp.tanh(c), c


def second_order_field(acceleration: Callable[[jax.Array], jax.Array], channels: int) -> Callable:
  """The first-order field of y = [z, v] (concatenated on the last axis, `channels` each): dy/dt = [v, a(y)].

  acceleration: y [..., 2 * channels] -> dv/dt [..., channels].
  """
  return lambda y: jnp.concatenate([y[..., channels:], acceleration(y)], axis=-1)


def solve_ode(
    func: Callable[[jax.Array], jax.Array],
    z0: jax.Array,
    ts: jax.Array,
    rtol: float,
    atol: float,
    max_steps: int,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Integrates dz/dt = func(z) from z(ts[0]) = z0 and reads z at every ts (§4.6).

  Dopri5 with a PID step-size controller (RMS error norm), dense interpolation at ts, gradients by differentiating
  through the solver's steps (recursive checkpointing). diffrax picks the first step (0.01) itself.

  Args:
    func: autonomous vector field, maps z to dz/dt of the same shape and dtype.
    z0: initial state, any shape.
    ts: [n] strictly increasing times.
    rtol, atol: step-size controller tolerances.
    max_steps: bound on the number of solver steps.

  Returns:
    zs: [n, *z0.shape]; zs[0] == z0. If the solve fails (e.g. max_steps reached), the times it did not reach hold inf.
    stats: int32 scalars num_steps, num_accepted_steps, num_rejected_steps, nfe; bool scalar solve_ok.
      nfe = 6 * num_steps + 1 evaluations of func (the +1 is the first step's first stage); each rejection of the
      very first step costs one evaluation more, which nfe does not count.
  """
  solution = diffrax.diffeqsolve(
      diffrax.ODETerm(lambda t, z, args: func(z)),
      diffrax.Dopri5(),
      t0=ts[0],
      t1=ts[-1],
      dt0=None,
      y0=z0,
      saveat=diffrax.SaveAt(ts=ts),
      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
      max_steps=max_steps,
      throw=False,
  )
  num_steps = jnp.asarray(solution.stats["num_steps"], jnp.int32)
  stats = {
      "num_steps": num_steps,
      "num_accepted_steps": jnp.asarray(solution.stats["num_accepted_steps"], jnp.int32),
      "num_rejected_steps": jnp.asarray(solution.stats["num_rejected_steps"], jnp.int32),
      "nfe": jnp.where(num_steps > 0, DOPRI5_EVALS_PER_STEP * num_steps + 1, 0),
      "solve_ok": solution.result == diffrax.RESULTS.successful,
  }
  return solution.ys, stats


def _as_pure_function(module: nn.Module, *example_inputs) -> Callable:
  """A bound submodule's forward pass as a pure function, safe to call inside jax.lax.scan or diffrax.

  Flax cannot create parameters inside JAX transforms, so at init the module first runs once on example_inputs.
  """
  if module.is_initializing():
    module(*example_inputs)
  unbound, variables = module.unbind()
  return functools.partial(unbound.apply, variables)


class DynamicsEncoder(nn.Module):
  """Frames and their times -> z0 -> z at query times -> dynamics tokens (§4).

  The initial state that `encode` returns and `solve` takes is z0 [batch, h', w', C] for kind "ode" and "lstm", and
  [z0, v0] [batch, h', w', 2C] for "ode2"; `solve` returns positions z only.
  """

  kind: str = "ode"
  base_channels: int = 32
  num_downsamples: int = 4
  spatial_channels: int = 256
  ode_hidden_channels: int = 128
  token_dim: int = 512
  rtol: float = 1e-3
  atol: float = 1e-4
  max_steps: int = 4096

  def setup(self):
    if self.kind not in KINDS:
      raise ValueError(f"dynamics kind {self.kind!r} must be one of {KINDS}")
    self.frame_encoder = ResnetEncoder(self.base_channels, self.num_downsamples, self.spatial_channels)
    self.f_enc = ODEFunc(self.spatial_channels, self.ode_hidden_channels)
    self.gru = ConvGRUCell()
    self.z0_head = Z0Head(keep_both_halves=self.kind == "ode2")
    if self.kind == "lstm":
      self.lstm = [ConvLSTMCell() for _ in range(LSTM_LAYERS)]
    else:
      self.f_dec = ODEFunc(self.spatial_channels, self.ode_hidden_channels)
    self.to_tokens = Conv(self.token_dim, 1)

  def encode(self, frames, ts, mask):
    """ODE-RNN over the clip from its last frame to its first (§4.5).

    Between consecutive frames the state takes exactly one Euler step of f_enc backwards in time, then the ConvGRU
    absorbs the frame where mask is 1.

    Args:
      frames: [batch, time, h, w, 3] in [0, 1], already at the dynamics resolution.
      ts: [time] increasing normalised frame times, shared by the batch.
      mask: [batch, time] in {0, 1}; 0 hides a frame from the encoder.

    Returns:
      the initial state: z0 [batch, h / 2**num_downsamples, w / 2**num_downsamples, spatial_channels], or [z0, v0]
      with 2 * spatial_channels channels for kind "ode2".
    """
    batch, time = frames.shape[:2]
    codes = self.frame_encoder(frames.reshape(batch * time, *frames.shape[2:]))
    codes = codes.reshape(batch, time, *codes.shape[1:])
    # The step into frame i starts at frame i + 1 (dt < 0); the last frame's step starts FIRST_STEP_OFFSET later.
    dts = jnp.append(ts[:-1] - ts[1:], -FIRST_STEP_OFFSET).astype(codes.dtype)
    h = jnp.zeros_like(codes[:, 0])
    f_enc = _as_pure_function(self.f_enc, h)
    gru = _as_pure_function(self.gru, codes[:, 0], h, mask[:, 0])

    def step(h, inputs):
      code, dt, frame_mask = inputs
      return gru(code, h + f_enc(h) * dt, frame_mask), None

    h, _ = jax.lax.scan(step, h, (jnp.moveaxis(codes, 1, 0), dts, mask.T), reverse=True)
    return self.z0_head(h)

  def solve(self, z0, query_ts):
    """The dynamics from the initial state z(query_ts[0]) = z0 at every query time, one solve for the whole batch.

    kind "ode": dz/dt = f_dec(z) (§4.6); "ode2": dz/dt = v, dv/dt = f_dec([z, v]) from z0 = [z0, v0] (§21.1);
    "lstm": the ConvLSTM stepped once per query time (§21.2).

    Args:
      z0: the initial state (see the class docstring).
      query_ts: [n_query] strictly increasing times, shared by the batch.

    Returns:
      z_t: [batch, n_query, h', w', spatial_channels] (inf at times a failed solve did not reach).
      stats: solve_ode's stats (nfe, num_steps, num_accepted_steps, num_rejected_steps, solve_ok); the ConvLSTM
        reports one accepted step per query time and no vector-field evaluation.
    """
    if self.kind == "lstm":
      return self.step_lstm(z0, query_ts)
    f_dec = _as_pure_function(self.f_dec, z0)
    field = second_order_field(f_dec, self.spatial_channels) if self.kind == "ode2" else f_dec
    zs, stats = solve_ode(field, z0, query_ts, self.rtol, self.atol, self.max_steps)
    return jnp.moveaxis(zs[..., :self.spatial_channels], 0, 1), stats

  def step_lstm(self, z0, query_ts):
    """Two-layer ConvLSTM (§21.2): every layer starts from (h, c) = (z0, 0); one step per query time, whose input
    is the time elapsed since the previous query (0 for the first) as one constant channel; the last layer's h at
    each step is z at that query time."""
    dts = jnp.diff(query_ts, prepend=query_ts[:1]).astype(z0.dtype)
    states = tuple((z0, jnp.zeros_like(z0)) for _ in self.lstm)
    example = jnp.zeros(z0.shape[:-1] + (1,), z0.dtype)
    cells = []
    for cell, (h, _) in zip(self.lstm, states):
      cells.append(_as_pure_function(cell, example, (h, h)))
      example = h

    def step(states, dt):
      x = jnp.full(z0.shape[:-1] + (1,), dt, z0.dtype)
      new_states = []
      for cell, state in zip(cells, states):
        state = cell(x, state)
        new_states.append(state)
        x = state[0]
      return tuple(new_states), x

    _, zs = jax.lax.scan(step, states, dts)
    num_steps = jnp.asarray(query_ts.shape[0], jnp.int32)
    stats = dict(num_steps=num_steps, num_accepted_steps=num_steps, num_rejected_steps=jnp.zeros((), jnp.int32),
                 nfe=jnp.zeros((), jnp.int32), solve_ok=jnp.asarray(True))
    return jnp.moveaxis(zs, 0, 1), stats

  def tokens(self, z_t):
    """z_t: [batch, n_query, h', w', spatial_channels] -> [batch, n_query, h' * w', token_dim], grid row-major."""
    x = self.to_tokens(z_t)
    return x.reshape(*x.shape[:2], -1, x.shape[-1])

  def __call__(self, frames, ts, mask, query_ts):
    """Returns (tokens [batch, n_query, h' * w', token_dim], the initial state z0, stats); arguments as above."""
    z0 = self.encode(frames, ts, mask)
    z_t, stats = self.solve(z0, query_ts)
    return self.tokens(z_t), z0, stats


def observation_mask(
    mode: str, batch: int, time: int, key: jax.Array | None = None, num_hidden: int = 0
) -> jax.Array:
  """Which clip frames the ODE-RNN sees (§11), the same for every video of the batch.

  Args:
    mode: 'static' (all frames observed; num_hidden is ignored), 'interpolate' (the first and last frames observed,
      num_hidden interior frames drawn at random with key hidden) or 'extrapolate' (the last num_hidden frames
      hidden).
    batch, time: output shape.
    key: PRNG key, needed by 'interpolate' only.
    num_hidden: number of hidden frames.

  Returns:
    [batch, time] float32, 1 for observed frames and 0 for hidden ones.
  """
  if mode == "static":
    hidden = jnp.zeros((time,), bool)
  elif mode == "interpolate":
    if not 0 <= num_hidden <= time - 2:
      raise ValueError(
          f"mask mode 'interpolate' hides interior frames only: num_hidden must be in [0, time - 2] = "
          f"[0, {time - 2}], got {num_hidden}."
      )
    if key is None:
      raise ValueError("mask mode 'interpolate' draws the hidden frames at random and needs a PRNG key.")
    interior = jax.random.permutation(key, time - 2)[:num_hidden] + 1
    hidden = jnp.zeros((time,), bool).at[interior].set(True)
  elif mode == "extrapolate":
    if not 0 <= num_hidden <= time - 1:
      raise ValueError(
          f"mask mode 'extrapolate' keeps at least the first frame: num_hidden must be in [0, time - 1] = "
          f"[0, {time - 1}], got {num_hidden}."
      )
    hidden = jnp.arange(time) >= time - num_hidden
  else:
    raise ValueError(f"unknown mask mode {mode!r}; expected 'static', 'interpolate' or 'extrapolate'.")
  return jnp.broadcast_to(~hidden, (batch, time)).astype(jnp.float32)
