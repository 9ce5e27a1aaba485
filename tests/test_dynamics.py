"""Tests for the dynamics encoder: closed-form ODEs, float32 against float64, and independent torch/scipy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import torch
import torch.nn.functional as F

from vidstyleode_jax.models.dynamics import (
    DynamicsEncoder,
    ODEFunc,
    ResnetEncoder,
    observation_mask,
    solve_ode,
)

IRREGULAR_TS = [0.0, 0.03, 0.17, 0.2, 0.61, 1.3]
TINY = dict(base_channels=4, num_downsamples=2, spatial_channels=8, ode_hidden_channels=8, token_dim=16)


def to_float64(tree):
  """Casts to float64 numpy arrays (jax.numpy would truncate them to float32 outside enable_x64)."""
  return jax.tree.map(lambda x: np.array(x, np.float64), tree)


def randomise(params, seed, scale=0.5):
  """Every parameter replaced by N(0, scale^2) (float32 numpy), so that zero-initialised biases are exercised too."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (scale * rng.normal(size=x.shape)).astype(np.float32), params)


# Independent torch (NCHW) re-implementations of docs/model.md §4, reading the Flax parameter trees.


def torch_weight(kernel):
  """Flax kernel [kh, kw, in, out] -> torch weight [out, in, kh, kw]."""
  return torch.from_numpy(np.asarray(kernel)).permute(3, 2, 0, 1)


def torch_tensor(x):
  return torch.from_numpy(np.array(x))


def torch_equal_conv_lrelu(p, x, stride=1):
  weight = torch_weight(p["conv"]["kernel"])
  x = F.conv2d(x, weight / math.sqrt(weight[0].numel()), stride=stride)
  return F.leaky_relu(x + torch_tensor(p["act"]["bias"])[None, :, None, None], 0.2) * math.sqrt(2.0)


def torch_resnet_encoder(p, frames):
  """frames: [n, 3, h, w] -> [n, c, h / 2**k, w / 2**k]."""
  x = torch_equal_conv_lrelu(p["from_rgb"], frames)
  num_blocks = sum(name.startswith("block") for name in p)
  for i in range(1, num_blocks + 1):
    block = p[f"block{i}"]
    main = torch_equal_conv_lrelu(block["conv1"], F.pad(x, (1, 1, 1, 1), mode="reflect"))
    main = torch_equal_conv_lrelu(block["conv2"], F.pad(main, (1, 0, 1, 0), mode="reflect"), stride=2)
    skip_weight = torch_weight(block["skip"]["kernel"])
    skip = F.conv2d(x[:, :, ::2, ::2], skip_weight / math.sqrt(skip_weight[0].numel()))
    x = (main + skip) / math.sqrt(2.0)
  x = torch_equal_conv_lrelu(p["conv"], x)
  weight = torch_weight(p["to_code"]["kernel"])
  x = F.conv2d(x, weight / math.sqrt(weight[0].numel()), torch_tensor(p["to_code"]["bias"]))
  return x / torch.sqrt((x**2).sum(dim=1, keepdim=True) + 1e-8)


def torch_conv(p, x):
  weight = torch_weight(p["kernel"])
  return F.conv2d(x, weight, torch_tensor(p["bias"]), padding=weight.shape[-1] // 2)


def torch_ode_func(p, z):
  x = z
  for i in range(4):
    x = torch_conv(p[f"conv{i}"], torch.tanh(x) if i else x)
  return x


def torch_conv_gru(p, x, h):
  reset, update = torch.sigmoid(torch_conv(p["gates"], torch.cat([x, h], dim=1))).chunk(2, dim=1)
  candidate = torch.tanh(torch_conv(p["candidate"], torch.cat([x, reset * h], dim=1)))
  return (1 - update) * h + update * candidate


def torch_encode(p, frames, ts, mask):
  """§4.5 written as the original loop: frames [b, t, 3, h, w], ts [t], mask [b, t] -> z0 [b, c, h', w']."""
  batch, time = frames.shape[:2]
  codes = torch_resnet_encoder(p["frame_encoder"], frames.flatten(0, 1)).unflatten(0, (batch, time))
  h = torch.zeros_like(codes[:, 0])
  previous, current = ts[-1] + 0.01, ts[-1]
  for i in reversed(range(time)):
    h_ode = h + torch_ode_func(p["f_enc"], h) * (current - previous)
    m = mask[:, i, None, None, None]
    h = m * torch_conv_gru(p["gru"], codes[:, i], h_ode) + (1 - m) * h_ode
    previous, current = ts[i], ts[i - 1] if i > 0 else None
  channels = h.shape[1]
  head = torch_conv(p["z0_head"]["conv2"], torch.relu(torch_conv(p["z0_head"]["conv1"], h)))
  return head[:, :channels]


def linear_field(matrix):
  return lambda z: z @ jnp.asarray(matrix, z.dtype).T


def random_clip(seed, batch=2, time=5, height=16, width=12):
  """frames [batch, time, height, width, 3] in [0, 1] and increasing irregular times from 0, float32 numpy."""
  rng = np.random.default_rng(seed)
  frames = rng.uniform(size=(batch, time, height, width, 3)).astype(np.float32)
  ts = np.cumsum(rng.uniform(0.02, 0.3, size=time)).astype(np.float32)
  return frames, ts - ts[0]


# ---------------------------------------------------------------------------------------------------------------------
# solve_ode against closed forms.

LINEAR_CASES = {
    "decaying_rotation": np.array([[-0.5, -4.0], [4.0, -0.5]]),
    "random_6x6": np.random.default_rng(0).normal(size=(6, 6)) / math.sqrt(6),
}


@pytest.mark.parametrize("case", sorted(LINEAR_CASES))
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_solve_ode_linear_matches_expm(case, precision):
  """dz/dt = A z at irregular times against expm(A t) z0.

  float64 uses rtol 1e-10 / atol 1e-12; float32 uses rtol 1e-6 / atol 1e-8, about as tight as float32 can honour.
  """
  matrix = LINEAR_CASES[case]
  z0 = np.random.default_rng(1).normal(size=(3, matrix.shape[0]))
  exact = np.stack([z0 @ scipy.linalg.expm(matrix * t).T for t in IRREGULAR_TS])
  rtol, atol, bound = {"float32": (1e-6, 1e-8, 1e-4), "float64": (1e-10, 1e-12, 1e-7)}[precision]
  with jax.enable_x64(precision == "float64"):
    dtype = jnp.dtype(precision)
    zs, stats = solve_ode(
        linear_field(matrix), jnp.asarray(z0, dtype), jnp.asarray(IRREGULAR_TS, dtype), rtol, atol, max_steps=4096
    )
    assert zs.dtype == dtype
  zs = np.asarray(zs, np.float64)
  relative_error = np.max(np.abs(zs - exact).max(axis=(1, 2)) / np.abs(exact).max(axis=(1, 2)))
  print(f"{case} {precision}: max relative error {relative_error:.2e}, nfe {int(stats['nfe'])}")
  assert bool(stats["solve_ok"])
  np.testing.assert_array_equal(zs[0], z0.astype(precision))
  assert relative_error < bound


def test_solve_ode_gradient_matches_expm():
  """d/dz0 of <w, z(t)> for dz/dt = A z is expm(A t)^T w (float64)."""
  matrix = LINEAR_CASES["decaying_rotation"]
  z0, weights = np.array([0.3, -1.2]), np.array([0.7, 0.4])
  with jax.enable_x64(True):
    ts = jnp.asarray(IRREGULAR_TS, jnp.float64)

    def objective(z0):
      zs, _ = solve_ode(linear_field(matrix), z0, ts, 1e-10, 1e-12, max_steps=4096)
      return jnp.dot(zs[-1], weights)

    gradient = np.asarray(jax.grad(objective)(jnp.asarray(z0)))
  expected = scipy.linalg.expm(matrix * IRREGULAR_TS[-1]).T @ weights
  np.testing.assert_allclose(gradient, expected, rtol=1e-7)


def test_solve_ode_nfe_counts_vector_field_evaluations():
  matrix = LINEAR_CASES["decaying_rotation"]
  calls = []

  def field(z):
    jax.debug.callback(lambda: calls.append(1))
    return linear_field(matrix)(z)

  zs, stats = solve_ode(field, jnp.ones((1, 2)), jnp.asarray(IRREGULAR_TS), 1e-3, 1e-4, max_steps=4096)
  jax.block_until_ready(zs)
  assert int(stats["num_steps"]) > 3
  assert int(stats["nfe"]) == len(calls) == 6 * int(stats["num_steps"]) + 1


def test_solve_ode_reports_failure_instead_of_raising():
  matrix = LINEAR_CASES["decaying_rotation"]
  solve = jax.jit(lambda z0, ts: solve_ode(linear_field(matrix), z0, ts, 1e-6, 1e-8, max_steps=2))
  zs, stats = solve(jnp.ones((1, 2)), jnp.asarray(IRREGULAR_TS))
  assert not bool(stats["solve_ok"])
  assert int(stats["num_steps"]) == 2
  assert np.isinf(np.asarray(zs[-1])).all()


# ---------------------------------------------------------------------------------------------------------------------
# float32 against float64 for the ODE function at realistic sizes.

FLOAT32_EPS = float(np.finfo(np.float32).eps)
ODE_FUNC = ODEFunc(channels=64, hidden_channels=128)


@jax.jit
def solve_ode_func(params, z0, ts, rtol, atol):
  return solve_ode(lambda z: ODE_FUNC.apply(params, z), z0, ts, rtol, atol, max_steps=4096)


@pytest.mark.parametrize("weight_scale", [1.0, 3.0], ids=["torch_init", "weights_x3"])
def test_ode_func_float32_matches_float64(weight_scale):
  """Our ODEFunc (C=64, hidden 128, 8x6 grid, batch 2) from a random z0 over ts in [0, 1], float32 against float64.

  Weights: PyTorch's default init, or that times 3 (a faster, stiffer field). A float64 solve at rtol 1e-10 /
  atol 1e-12 is the reference. The solver accepts errors of about one "unit" atol + rtol * max|z| (RMS per step);
  float32 rounding adds a floor of some tens of eps * max|z| (most of it from evaluating Dopri5's dense-output
  polynomial at the query times). Asserted:
  * training tolerances: |z32 - z64| < 1% of a unit, i.e. float32 is invisible next to the accepted solver error;
  * tight tolerances (rtol 1e-6, atol 1e-8, at the float32 limit): |z32 - z_ref| < one unit + 100 eps * max|z|.
  """
  z0 = np.random.default_rng(1).normal(size=(2, 8, 6, ODE_FUNC.channels)).astype(np.float32)
  params = jax.tree.map(lambda p: weight_scale * p, jax.jit(ODE_FUNC.init)(jax.random.key(0), z0))
  ts = np.array([0.0, 0.1, 0.24, 0.5, 0.72, 1.0], np.float32)
  tolerances = {"training": (1e-3, 1e-4), "tight": (1e-6, 1e-8)}
  results = {(name, "float32"): solve_ode_func(params, z0, ts, *tol) for name, tol in tolerances.items()}
  with jax.enable_x64(True):
    args64 = to_float64((params, z0, ts))
    for name, tol in tolerances.items():
      results[name, "float64"] = solve_ode_func(*args64, *tol)
    reference, reference_stats = solve_ode_func(*args64, 1e-10, 1e-12)
  reference = np.asarray(reference)
  z_max = np.abs(reference).max()
  print(f"\nweights x{weight_scale}: max|z| {z_max:.3f}, reference nfe {int(reference_stats['nfe'])}")
  for name, (rtol, atol) in tolerances.items():
    z32, stats32 = results[name, "float32"]
    z64, stats64 = results[name, "float64"]
    assert bool(stats32["solve_ok"]) and bool(stats64["solve_ok"])
    z32, z64 = np.asarray(z32, np.float64), np.asarray(z64)
    difference = np.abs(z32 - z64).max()
    unit = atol + rtol * z_max
    print(
        f"  {name} (rtol {rtol:g}, atol {atol:g}): |f32 - f64| {difference:.2e} (relative {difference / z_max:.1e}),"
        f" |f32 - ref| {np.abs(z32 - reference).max():.2e}, |f64 - ref| {np.abs(z64 - reference).max():.2e},"
        f" unit {unit:.1e}, nfe f32 {int(stats32['nfe'])} / f64 {int(stats64['nfe'])}"
    )
    if name == "training":
      assert difference < 0.01 * unit
    else:
      assert np.abs(z32 - reference).max() < unit + 100 * FLOAT32_EPS * z_max


# ---------------------------------------------------------------------------------------------------------------------
# The encoder path against independent torch references.


@pytest.fixture(scope="module")
def tiny_model():
  """(model, float32 params, frames [2, 5, 16, 12, 3], irregular ts [5], model outputs on that clip).

  The outputs are those of __call__ with every frame observed and the first three times queried.
  """
  frames, ts = random_clip(seed=0)
  model = DynamicsEncoder(**TINY)
  outputs, params = jax.jit(model.init_with_output)(
      jax.random.key(0), frames, ts, observation_mask("static", 2, 5), ts[:3]
  )
  return model, params, frames, ts, outputs


def forward_all(module, frames, ts, mask, query_ts):
  """encode, solve and tokens chained by hand, returning every intermediate."""
  z0 = module.encode(frames, ts, mask)
  z_t, stats = module.solve(z0, query_ts)
  return z0, z_t, module.tokens(z_t), stats


def test_resnet_encoder_matches_torch(tiny_model):
  _, params, frames, _, _ = tiny_model
  frames = frames[:, 0]
  encoder_params = randomise(params["params"]["frame_encoder"], seed=1)
  codes = np.asarray(jax.jit(ResnetEncoder(4, 2, 8).apply)({"params": encoder_params}, frames))
  expected = torch_resnet_encoder(encoder_params, torch_tensor(frames).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
  assert codes.shape == (2, 4, 3, 8)
  np.testing.assert_allclose(np.linalg.norm(codes, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(codes, expected.numpy(), atol=1e-5)


def test_dynamics_encoder_matches_torch_loop_and_scipy(tiny_model):
  """float64: z0 against the §4.5 loop in torch (T=3, per-video masks), z_t against scipy, tokens against torch."""
  _, params, frames, _, _ = tiny_model
  model = DynamicsEncoder(**TINY, rtol=1e-10, atol=1e-12)
  p, frames, ts, mask, query_ts = to_float64((
      randomise(params["params"], seed=2, scale=0.3),
      frames[:, :3],
      np.array([0.0, 0.1, 0.35]),
      np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]),
      np.array([0.1, 0.25, 0.6]),
  ))
  with jax.enable_x64(True):
    z0, z_t, tokens, stats = jax.jit(lambda *args: model.apply(*args, method=forward_all))(
        {"params": p}, frames, ts, mask, query_ts
    )
  assert z0.dtype == z_t.dtype == tokens.dtype == jnp.float64 and bool(stats["solve_ok"])
  expected_z0 = torch_encode(p, torch_tensor(frames).permute(0, 1, 4, 2, 3), ts, torch_tensor(mask))
  np.testing.assert_allclose(np.asarray(z0), expected_z0.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)

  z0_nchw = torch_tensor(z0).permute(0, 3, 1, 2)
  expected_z_t = scipy.integrate.solve_ivp(
      lambda t, z: torch_ode_func(p["f_dec"], torch.from_numpy(z).reshape(z0_nchw.shape)).numpy().ravel(),
      (query_ts[0], query_ts[-1]),
      z0_nchw.numpy().ravel(),
      method="DOP853",
      t_eval=query_ts,
      rtol=1e-12,
      atol=1e-14,
  ).y.T.reshape(len(query_ts), *z0_nchw.shape)
  np.testing.assert_array_equal(np.asarray(z_t[:, 0]), np.asarray(z0))
  np.testing.assert_allclose(np.asarray(z_t), expected_z_t.transpose(1, 0, 3, 4, 2), atol=1e-9)

  z_t_nchw = torch_tensor(z_t).flatten(0, 1).permute(0, 3, 1, 2)
  expected_tokens = torch_conv(p["to_tokens"], z_t_nchw).flatten(2).transpose(1, 2).unflatten(0, z_t.shape[:2])
  np.testing.assert_allclose(np.asarray(tokens), expected_tokens.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode, num_hidden", [("static", 0), ("interpolate", 2), ("extrapolate", 2)])
def test_hidden_frames_do_not_touch_z0(tiny_model, mode, num_hidden):
  """Repainting a hidden frame leaves z0 bit-identical; repainting an observed frame changes it."""
  model, params, frames, ts, _ = tiny_model
  batch, time = frames.shape[:2]
  mask = observation_mask(mode, batch, time, jax.random.key(1), num_hidden)
  hidden = np.asarray(mask[0]) == 0
  assert hidden.sum() == num_hidden
  encode = jax.jit(lambda frames, mask: model.apply(params, frames, ts, mask, method="encode"))
  z0 = np.asarray(encode(frames, mask))
  new_pixels = np.random.default_rng(3).uniform(size=frames.shape[:1] + frames.shape[2:]).astype(np.float32)
  for i in range(time):
    repainted = np.array(frames)
    repainted[:, i] = new_pixels
    changed = np.asarray(encode(repainted, mask))
    if hidden[i]:
      np.testing.assert_array_equal(changed, z0)
    else:
      assert np.abs(changed - z0).max() > 1e-6, f"observed frame {i} did not change z0"


@pytest.mark.smoke
def test_call_and_gradients_reach_z0_and_ode_params(tiny_model):
  model, params, _, ts, (tokens, z0, stats) = tiny_model
  assert tokens.shape == (2, 3, 4 * 3, 16) and z0.shape == (2, 4, 3, 8) and bool(stats["solve_ok"])

  def objective(params, z0):
    z_t, _ = model.apply(params, z0, ts, method="solve")
    return jnp.sum(z_t**2)

  param_grads, z0_grad = jax.jit(jax.grad(objective, argnums=(0, 1)))(params, z0)
  for grad in [z0_grad, *jax.tree.leaves(param_grads["params"]["f_dec"])]:
    assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0


# ---------------------------------------------------------------------------------------------------------------------
# Observation masks.


def test_observation_masks():
  static = np.asarray(observation_mask("static", 2, 6))
  np.testing.assert_array_equal(static, np.ones((2, 6), np.float32))
  extrapolate = np.asarray(observation_mask("extrapolate", 2, 6, num_hidden=2))
  np.testing.assert_array_equal(extrapolate, np.tile([1, 1, 1, 1, 0, 0], (2, 1)))
  hidden_sets = set()
  for seed in range(10):
    interpolate = np.asarray(observation_mask("interpolate", 3, 6, jax.random.key(seed), num_hidden=2))
    assert interpolate.dtype == np.float32 and interpolate.shape == (3, 6)
    assert (interpolate == interpolate[0]).all() and set(np.unique(interpolate)) <= {0.0, 1.0}
    assert interpolate[0, 0] == interpolate[0, -1] == 1 and interpolate[0].sum() == 4
    hidden_sets.add(tuple(np.flatnonzero(interpolate[0] == 0)))
  assert len(hidden_sets) > 1


@pytest.mark.parametrize(
    "mode, num_hidden, with_key, message",
    [
        ("interpolate", 5, True, "time - 2"),
        ("interpolate", -1, True, "time - 2"),
        ("interpolate", 1, False, "PRNG key"),
        ("extrapolate", 6, False, "time - 1"),
        ("sideways", 0, False, "unknown mask mode"),
    ],
)
def test_observation_mask_rejects_bad_arguments(mode, num_hidden, with_key, message):
  with pytest.raises(ValueError, match=message):
    observation_mask(mode, 2, 6, jax.random.key(0) if with_key else None, num_hidden)
