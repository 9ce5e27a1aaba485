"""Each faster formulation against the plain one it replaces: same params, random inputs, forward and gradients
within 1e-5.

The plain formulations are written here, test-local, where the package no longer has them: the modulation network
that projects every dynamics token to keys and values, runs once per style token and calls its blocks one by one,
the composition that tiles the dynamics per style, transformer blocks and the mapper's modulation modules called one
by one. Convolutions are compared with both of the package's formulations (XLA's convolution, used on GPU and TPU,
and im2col matmuls, used on CPU), selected by patching backends.convolutions_as_matmul; stride-2 convolutions with
their input gradient by phases (models/strided_conv.py) against XLA's. Loss terms with a zero weight are checked not
to run.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidstyleode_jax import backends
from vidstyleode_jax import train_step
from vidstyleode_jax.models import block_scan
from vidstyleode_jax.models import dynamics as dynamics_lib
from vidstyleode_jax.models import layers
from vidstyleode_jax.models import mapper as mapper_lib
from vidstyleode_jax.models import modulation as modulation_lib
from vidstyleode_jax.models import strided_conv
from vidstyleode_jax.models import vidstyleode
from vidstyleode_jax.models import vit as vit_lib

TOLERANCE = 1e-5


def randomise(tree, seed, scale=0.3):
  """Every leaf replaced by N(0, scale^2) float32, so that zero-initialised biases and embeddings matter too."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(scale * rng.normal(size=x.shape), jnp.float32), tree)


def assert_trees_close(actual, expected, tolerance=TOLERANCE):
  """Every leaf within tolerance, relative to the largest magnitude of that leaf (absolute below 1)."""
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    error = np.abs(a - e).max() / max(1.0, np.abs(e).max())
    assert error < tolerance, f"{jax.tree_util.keystr(path)}: relative error {error:.2e}"


# ---------------------------------------------------------------------------------------------------------------------
# Convolutions: im2col matmul against XLA's convolution.


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_conv_as_matmul_matches_convolution(kernel_size):
  rng = np.random.default_rng(kernel_size)
  x = jnp.asarray(rng.normal(size=(2, 7, 5, 6)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 6, 4)), jnp.float32)
  cotangent = jnp.asarray(rng.normal(size=(2, 7, 5, 4)), jnp.float32)

  def outputs(as_matmul):
    objective = lambda x, kernel: jnp.sum(layers.conv_same(x, kernel, as_matmul) * cotangent)
    return layers.conv_same(x, kernel, as_matmul), jax.grad(objective, argnums=(0, 1))(x, kernel)

  matmul, convolution = jax.jit(outputs, static_argnums=0)(True), jax.jit(outputs, static_argnums=0)(False)
  assert matmul[0].shape == (2, 7, 5, 4)
  assert_trees_close(matmul, convolution)


@pytest.mark.parametrize("kernel_size,height,width", [(1, 9, 8), (3, 9, 7), (3, 8, 10), (4, 11, 9), (5, 12, 13)])
def test_stride2_input_gradient_by_phases_matches_convolution(kernel_size, height, width):
  """strided_conv.conv_stride2 (input gradient by output phases) against XLA's stride-2 convolution and its
  gradients, for odd and even kernels and input sizes."""
  rng = np.random.default_rng(kernel_size * height)
  x = jnp.asarray(rng.normal(size=(2, height, width, 6)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 6, 5)), jnp.float32)
  plain = lambda x, kernel: jax.lax.conv_general_dilated(x, kernel, (2, 2), "VALID",
                                                         dimension_numbers=strided_conv.DIMENSIONS)
  cotangent = jnp.asarray(rng.normal(size=plain(x, kernel).shape), jnp.float32)

  def outputs(conv):
    return conv(x, kernel), jax.grad(lambda x, kernel: jnp.sum(conv(x, kernel) * cotangent), argnums=(0, 1))(x, kernel)

  assert_trees_close(jax.jit(outputs, static_argnums=0)(strided_conv.conv_stride2),
                     jax.jit(outputs, static_argnums=0)(plain))


TINY = dict(base_channels=4, num_downsamples=2, spatial_channels=8, ode_hidden_channels=8, token_dim=16)


def test_dynamics_encoder_convolution_formulations_agree(monkeypatch):
  """The frame encoder, the ODE-RNN (lax.scan over ConvGRU and f_enc), one f_dec evaluation and the tokens, with
  the CPU's formulations of their convolutions (im2col in loops, stride-2 input gradients by phases) and with XLA's:
  forward and parameter gradients."""
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.uniform(size=(2, 4, 16, 12, 3)), jnp.float32)
  ts = jnp.asarray([0.0, 0.1, 0.25, 0.4])
  mask = jnp.asarray([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
  model = dynamics_lib.DynamicsEncoder(**TINY)
  params = randomise(model.init(jax.random.key(0), frames, ts, mask, ts[:3]), seed=1)

  def forward(module):
    z0 = module.encode(frames, ts, mask)
    return z0, module.tokens(jnp.stack([z0, z0 + module.f_dec(z0)], axis=1))

  def outputs(params):
    objective = lambda params: sum(jnp.sum(jnp.sin(x)) for x in model.apply(params, method=forward))
    return model.apply(params, method=forward), jax.grad(objective)(params)

  results = {}
  for cpu_formulations in (True, False):
    monkeypatch.setattr(backends, "convolutions_as_matmul", lambda backend=None, value=cpu_formulations: value)
    monkeypatch.setattr(backends, "strided_input_gradient_by_phases",
                        lambda backend=None, value=cpu_formulations: value)
    results[cpu_formulations] = jax.jit(lambda params: outputs(params))(params)  # a fresh trace per formulation
  assert_trees_close(results[True], results[False])


YNNPACK_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNNPACK_KERNEL = "__ynn_fusion"


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the compiler options are XLA:CPU's")
def test_cpu_compiler_options_match_xla_without_ynnpack():
  """The frame encoder's forward and parameter gradients compiled with the project's CPU options (dots and sums
  in YNNPACK) and with YNNPACK off: within 1e-5; the first must run YNNPACK kernels and the second none."""
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.uniform(size=(6, 32, 24, 3)), jnp.float32)
  model = dynamics_lib.ResnetEncoder(base_channels=4, num_downsamples=2, out_channels=8)
  params = randomise(model.init(jax.random.key(0), frames), seed=1)
  objective = lambda params: jnp.sum(jnp.sin(model.apply(params, frames)))
  lowered = jax.jit(lambda params: (model.apply(params, frames), jax.grad(objective)(params))).lower(params)
  project = lowered.compile(compiler_options=backends.compiler_options("cpu"))
  plain = lowered.compile(compiler_options={YNNPACK_OPTION: ""})
  assert YNNPACK_KERNEL in project.as_text() and YNNPACK_KERNEL not in plain.as_text()
  assert_trees_close(project(params), plain(params))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the compiler options are XLA:CPU's")
def test_cpu_compiler_options_keep_bias_gradient_sums_off_windowed_reductions():
  """A bias gradient of the frame encoder's first block (a sum over 24 frames x 128 x 96 per channel) compiles to a
  YNNPACK sum under the project's options; without YNNPACK sums XLA:CPU writes it as a windowed reduction, which
  took 25 ms per bias in the fashion step (docs/performance.md §1)."""
  gradient = jax.ShapeDtypeStruct((24, 128, 96, 32), jnp.float32)
  lowered = jax.jit(lambda g: jnp.sum(g * g, axis=(0, 1, 2))).lower(gradient)
  dots_only = lowered.compile(compiler_options={YNNPACK_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}).as_text()
  project = lowered.compile(compiler_options=backends.compiler_options("cpu")).as_text()
  assert "reduce-window" in dots_only
  assert "reduce-window" not in project and YNNPACK_KERNEL in project


# ---------------------------------------------------------------------------------------------------------------------
# The modulation network and the composition, against the plain formulation they replace.


class PlainAttention(nn.Module):
  num_heads: int

  @nn.compact
  def __call__(self, queries, keys_values):
    width = queries.shape[-1]
    head_dim = width // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head_dim), name=name)
    q, k, v = dense("query")(queries), dense("key")(keys_values), dense("value")(keys_values)
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head_dim), axis=-1)
    return nn.DenseGeneral(width, axis=(-2, -1), name="out")(jnp.einsum("bhqk,bkhd->bqhd", weights, v))


class PlainBlock(nn.Module):
  """The self-attention block (cross=False) or the cross-attention block, keys and values projected per token."""

  num_heads: int
  mlp_dim: int
  cross: bool

  @nn.compact
  def __call__(self, x, y=None):
    norm = lambda name: nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=name)
    if self.cross:
      x = x + PlainAttention(self.num_heads, name="attn")(norm("ln_x")(x), norm("ln_y")(y))
    else:
      h = norm("ln_1")(x)
      x = x + PlainAttention(self.num_heads, name="attn")(h, h)
    return x + modulation_lib.Mlp(self.mlp_dim, modulation_lib.PAPER_INIT_STD, name="mlp")(norm("ln_2")(x))


class PlainModulation(nn.Module):
  """One style token per row, self-attention recomputed for every call (the original's order of work)."""

  m: modulation_lib.ModulationNetwork

  @nn.compact
  def __call__(self, style, dynamics_tokens):
    """style: [batch, width]; dynamics_tokens: [batch, tokens, width] -> [batch, 3, width]."""
    m = self.m
    style_pos = self.param("style_pos_embedding", nn.initializers.zeros, (1, 1, m.width))
    dynamics_pos = self.param("dynamics_pos_embedding", nn.initializers.zeros, (1, m.num_dynamics_tokens, m.width))
    y = dynamics_tokens + dynamics_pos[:, : dynamics_tokens.shape[1]]
    for i in range(m.num_self_layers):
      y = PlainBlock(m.num_heads, m.self_mlp_dim, cross=False, name=f"self_{i}")(y)
    branches = []
    for group in range(3):
      x = style[:, None, :] + style_pos
      for i in range(m.num_cross_layers if group < 2 else 0):
        x = PlainBlock(m.num_heads, m.cross_mlp_dim, cross=True, name=f"cross_{group}_{i}")(x, y)
      x = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=f"head_ln_{group}")(x[:, 0])
      branches.append(nn.Dense(m.width, use_bias=False, name=f"head_{group}")(x))
    return jnp.stack(branches, axis=1)


MODULATION = modulation_lib.ModulationNetwork(
    width=32, num_heads=4, num_self_layers=1, num_cross_layers=2, self_mlp_dim=64, cross_mlp_dim=48,
    num_dynamics_tokens=12,
)


def test_styled_latents_match_plain_composition():
  """VidStyleODE.styled_latents against the plain formulation: W+ and every parameter gradient, same param tree.

  New: the dynamics tokens and their self-attention computed once for both style tokens, the cross-attention's key
  and value projections on the query side, each branch's cross-attention blocks as one scan. Plain: the dynamics
  tiled per style, every token projected to keys and values, the modulation network run once per style, its blocks
  called one by one.
  """
  rng = np.random.default_rng(4)
  model = vidstyleode.VidStyleODE(
      dynamics=dynamics_lib.DynamicsEncoder(**(TINY | dict(token_dim=32))),
      modulation=MODULATION,
      mapper=mapper_lib.StyleMapper(group_sizes=(1, 2, 2), group_depths=(2, 1, 1)),
      delta_scale=0.1,
  )
  z_t = jnp.asarray(rng.normal(size=(2, 3, 4, 3, 8)), jnp.float32)
  content = jnp.asarray(rng.normal(size=(2, 5, 16)), jnp.float32)
  styles = jnp.asarray(rng.normal(size=(2, 2, 32)), jnp.float32)
  init = lambda module: module.styled_latents(z_t, content, styles)
  params = randomise(model.init(jax.random.key(0), method=init), seed=5)
  weights = jnp.asarray(rng.normal(size=(2, 2, 3, 5, 16)), jnp.float32)
  plain = PlainModulation(MODULATION)
  plain_params = plain.init(jax.random.key(0), jnp.zeros((6, 32)), jnp.zeros((6, 12, 32)))
  per_block = block_scan.unstack(params["params"]["modulation"])
  assert jax.tree.map(jnp.shape, per_block) == jax.tree.map(jnp.shape, plain_params["params"])

  def new(params):
    return model.apply(params, z_t, content, styles, method="styled_latents")

  def old(params):
    tokens = model.apply(params, z_t, method=lambda m, z: m.dynamics.tokens(z)).reshape(6, 12, 32)
    flat = lambda x: jnp.repeat(x, 3, axis=0)
    w = []
    for style in styles:
      conditions = plain.apply({"params": block_scan.unstack(params["params"]["modulation"])}, flat(style), tokens)
      delta = model.mapper.apply({"params": params["params"]["mapper"]}, flat(content), conditions)
      w.append((flat(content) + 0.1 * delta).reshape(2, 3, 5, 16))
    return jnp.stack(w)

  outputs = lambda fn: (fn(params), jax.grad(lambda p: jnp.sum(fn(p) * weights))(params))
  assert_trees_close(jax.jit(lambda: outputs(new))(), jax.jit(lambda: outputs(old))())


class PlainMapper(nn.Module):
  """The W+ mapper with its modulation modules called one by one."""

  m: mapper_lib.StyleMapper

  @nn.compact
  def __call__(self, content, conditions):
    outputs, start = [], 0
    for group, (size, depth) in enumerate(zip(self.m.group_sizes, self.m.group_depths)):
      x = mapper_lib.pixel_norm_over_layers(content[:, start:start + size])
      for i in range(depth):
        activate = i < depth - 1 or self.m.output_activation == "leaky_relu"
        x = mapper_lib.ModulationModule(content.shape[-1], name=f"group_{group}_{i}")(x, conditions[:, group], activate)
      outputs.append(x)
      start += size
    return jnp.concatenate(outputs, axis=1)


@pytest.mark.parametrize("output_activation", mapper_lib.OUTPUT_ACTIVATIONS)
def test_scanned_mapper_matches_modules_called_one_by_one(output_activation):
  """StyleMapper runs each group's modulation modules as one scan over their stacked params: the same params per
  module (block_scan.unstack), Δ and the gradients w.r.t. the params, the content code and the conditions."""
  rng = np.random.default_rng(8)
  mapper = mapper_lib.StyleMapper(group_sizes=(2, 3, 1), group_depths=(3, 2, 1), output_activation=output_activation)
  content = jnp.asarray(rng.normal(size=(4, 6, 16)), jnp.float32)
  conditions = jnp.asarray(rng.normal(size=(4, 3, 16)), jnp.float32)
  plain = PlainMapper(mapper)
  params = randomise(mapper.init(jax.random.key(0), content, conditions), seed=9)
  plain_shapes = jax.tree.map(jnp.shape, plain.init(jax.random.key(0), content, conditions))
  assert jax.tree.map(jnp.shape, block_scan.unstack(params)) == plain_shapes
  weights = jnp.asarray(rng.normal(size=(4, 6, 16)), jnp.float32)

  def outputs(fn):
    objective = lambda *args: jnp.sum(fn(*args) * weights)
    return fn(params, content, conditions), jax.grad(objective, argnums=(0, 1, 2))(params, content, conditions)

  scanned = jax.jit(lambda: outputs(mapper.apply))()
  assert_trees_close(scanned, jax.jit(lambda: outputs(lambda p, *args: plain.apply(block_scan.unstack(p), *args)))())


# ---------------------------------------------------------------------------------------------------------------------
# Loss terms with a zero weight: not computed (lax.cond) instead of computed and discarded (jnp.where).


def test_gated_total_skips_zero_weight_groups_and_matches_the_weighted_sum():
  calls = []

  def counted(name, value):
    jax.debug.callback(lambda: calls.append(name))
    return value

  def total_and_terms(x, weights):
    groups = {
        ("a", "b"): lambda: dict(a=counted("ab", jnp.sum(x**2)), b=jnp.sum(jnp.sin(x))),
        ("c",): lambda: dict(c=counted("c", jnp.sum(jnp.log(x)))),  # NaN and its gradient too for x < 0
    }
    return train_step.gated_total(weights, groups)

  x = jnp.asarray([0.5, -1.5, 2.0])
  grad = jax.jit(jax.value_and_grad(lambda x, w: total_and_terms(x, w)[0]))
  weights = dict(a=jnp.float32(0.7), b=jnp.float32(0.0), c=jnp.float32(0.0))
  total, gradient = grad(x, weights)
  jax.block_until_ready(gradient)
  assert calls.count("c") == 0 and calls.count("ab") >= 1
  np.testing.assert_allclose(total, 0.7 * np.sum(np.asarray(x) ** 2), rtol=1e-6)
  np.testing.assert_allclose(gradient, 1.4 * np.asarray(x), rtol=1e-6)
  _, terms = jax.jit(total_and_terms)(x, weights)
  assert float(terms["c"]) == 0.0

  weights = dict(a=jnp.float32(0.7), b=jnp.float32(0.2), c=jnp.float32(0.1))
  y = jnp.asarray([0.5, 1.5, 2.0])
  total, gradient = grad(y, weights)
  assert calls.count("c") >= 1
  y64 = np.asarray(y, np.float64)
  np.testing.assert_allclose(total, 0.7 * np.sum(y64**2) + 0.2 * np.sum(np.sin(y64)) + 0.1 * np.sum(np.log(y64)),
                             rtol=1e-6)
  np.testing.assert_allclose(gradient, 1.4 * y64 + 0.2 * np.cos(y64) + 0.1 / y64, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Transformer blocks as one scan over their stacked parameters, against the blocks called one by one.


class BlockStack(nn.Module):
  """Three transformer blocks `blocks_{i}` with a shared extra input (a causal mask, as CLIP's text tower)."""

  scanned: bool

  @nn.compact
  def __call__(self, x, mask):
    """-> every block's (output, keys), stacked over the blocks."""
    names = [f"blocks_{i}" for i in range(3)]
    if self.scanned:
      block = vit_lib.EncoderBlock(2, 32, 1e-6, "gelu", parent=None)
      return block_scan.scan_blocks(self, block, names, x, mask)[1]
    results = []
    for name in names:
      results.append(vit_lib.EncoderBlock(2, 32, 1e-6, "gelu", name=name)(x, mask))
      x = results[-1][0]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *results)


def test_scanned_blocks_match_blocks_called_one_by_one():
  """block_scan.scan_blocks (used by the ViT, CLIP's text tower and the modulation network): same param tree,
  every block's output and keys, and the gradients w.r.t. the params and the input."""
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.normal(size=(2, 5, 16)), jnp.float32)
  mask = jnp.tril(jnp.ones((5, 5), bool))
  scanned, unrolled = BlockStack(scanned=True), BlockStack(scanned=False)
  params = scanned.init(jax.random.key(0), x, mask)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, unrolled.init(jax.random.key(0), x, mask))
  params = randomise(params, seed=7)
  weights = [jnp.asarray(rng.normal(size=(3, 2, 5, 16)), jnp.float32) for _ in range(2)]

  def outputs(module):
    fn = lambda params, x: module.apply(params, x, mask)
    objective = lambda params, x: sum(jnp.sum(y * w) for y, w in zip(fn(params, x), weights))
    return fn(params, x), jax.grad(objective, argnums=(0, 1))(params, x)

  assert_trees_close(jax.jit(lambda: outputs(scanned))(), jax.jit(lambda: outputs(unrolled))())
