"""Tests for the Flax StyleGAN2 generator against direct numpy/torch computations of rosinality's definitions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from port_weights.rosinality import convert_generator
from tests.reference import rosinality_stylegan2 as reference
from vidstyleode_jax.models.stylegan2 import BLUR_KERNEL, Generator, ModulatedConv2d, upfirdn2d


def rosinality_key_shapes(size, style_dim=512, n_mlp=8, channel_multiplier=2, channel_divisor=1, aspect=1):
  """docs/weight_formats.md §1.3's key table (§1.6 for aspect 2).

  Returns ({key: shape} of weights, {key: shape} of buffers).
  """
  log_size = int(math.log2(size))
  channel_table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
                   256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
  channels = {r: c // channel_divisor for r, c in channel_table.items()}
  weights, buffers = {}, {}
  for i in range(1, n_mlp + 1):
    weights[f"style.{i}.weight"] = (style_dim, style_dim)
    weights[f"style.{i}.bias"] = (style_dim,)
  weights["input.input"] = (1, channels[4], 4, 4 // aspect)

  def styled_conv(name, c_in, c_out):
    weights[f"{name}.conv.weight"] = (1, c_out, c_in, 3, 3)
    weights[f"{name}.conv.modulation.weight"] = (c_in, style_dim)
    weights[f"{name}.conv.modulation.bias"] = (c_in,)
    weights[f"{name}.noise.weight"] = (1,)
    weights[f"{name}.activate.bias"] = (c_out,)

  def to_rgb(name, c_in):
    weights[f"{name}.conv.weight"] = (1, 3, c_in, 1, 1)
    weights[f"{name}.conv.modulation.weight"] = (c_in, style_dim)
    weights[f"{name}.conv.modulation.bias"] = (c_in,)
    weights[f"{name}.bias"] = (1, 3, 1, 1)

  styled_conv("conv1", channels[4], channels[4])
  to_rgb("to_rgb1", channels[4])
  for j in range(log_size - 2):
    r = 2 ** (j + 3)
    styled_conv(f"convs.{2 * j}", channels[r // 2], channels[r])
    buffers[f"convs.{2 * j}.conv.blur.kernel"] = (4, 4)
    styled_conv(f"convs.{2 * j + 1}", channels[r], channels[r])
    to_rgb(f"to_rgbs.{j}", channels[r])
    buffers[f"to_rgbs.{j}.upsample.kernel"] = (4, 4)
  for k in range(2 * log_size - 3):
    side = 2 ** ((k + 5) // 2)
    buffers[f"noises.noise_{k}"] = (1, 1, side, side // aspect)
  return weights, buffers


def numpy_upfirdn2d(x, kernel, up, down, pad):
  """x: [batch, h, w, c]. Literal definition: zero insertion, pad (negative crops), true convolution, subsampling."""
  batch, height, width, channels = x.shape
  upsampled = np.zeros((batch, height * up, width * up, channels), x.dtype)
  upsampled[:, ::up, ::up] = x
  before, after = pad
  grow = (max(before, 0), max(after, 0))
  padded = np.pad(upsampled, ((0, 0), grow, grow, (0, 0)))
  crop_h = slice(max(-before, 0), padded.shape[1] - max(-after, 0))
  crop_w = slice(max(-before, 0), padded.shape[2] - max(-after, 0))
  padded = padded[:, crop_h, crop_w]
  kh, kw = kernel.shape
  out_h, out_w = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
  out = np.zeros((batch, out_h, out_w, channels), np.float64)
  for i in range(out_h):
    for j in range(out_w):
      window = padded[:, i: i + kh, j: j + kw]
      out[:, i, j] = np.einsum("bhwc,hw->bc", window, kernel[::-1, ::-1])
  return out[:, ::down, ::down]


@pytest.mark.parametrize("up, down, pad", [(2, 1, (2, 1)), (1, 1, (1, 1)), (1, 2, (2, 2)), (2, 1, (-1, 2))])
def test_upfirdn2d_matches_definition(up, down, pad):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
  kernel = rng.standard_normal((4, 4)).astype(np.float32)  # asymmetric, so a missing flip shows
  expected = numpy_upfirdn2d(x.astype(np.float64), kernel.astype(np.float64), up, down, pad)
  with jax.default_matmul_precision("highest"):  # no TF32 on GPUs
    got = np.asarray(upfirdn2d(jnp.asarray(x), kernel, up=up, down=down, pad=pad))
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kernel_size, demodulate, upsample", [(3, True, True), (3, True, False), (1, False, False)]
)
def test_modulated_conv_matches_per_sample_torch(kernel_size, demodulate, upsample):
  batch, height, width, c_in, c_out, style_dim = 3, 6, 4, 5, 4, 7
  layer = ModulatedConv2d(c_out, kernel_size, demodulate=demodulate, upsample=upsample)
  x = jax.random.normal(jax.random.key(1), (batch, height, width, c_in))
  w = jax.random.normal(jax.random.key(2), (batch, style_dim))
  params = layer.init(jax.random.key(0), x, w)["params"]
  params["modulation"]["bias"] = params["modulation"]["bias"] + 0.3 * jax.random.normal(jax.random.key(3), (c_in,))
  with jax.default_matmul_precision("highest"):  # no TF32 on GPUs
    got = np.asarray(layer.apply({"params": params}, x, w))

  as_torch = lambda a: torch.from_numpy(np.asarray(a, np.float64))
  styles = as_torch(w) @ as_torch(params["modulation"]["kernel"]) / math.sqrt(style_dim)
  styles = styles + as_torch(params["modulation"]["bias"])
  weight_oihw = as_torch(params["kernel"]).permute(3, 2, 0, 1)
  x_nchw = as_torch(x).permute(0, 3, 1, 2)
  outputs = []
  for b in range(batch):
    w_hat = weight_oihw / math.sqrt(c_in * kernel_size**2) * styles[b][None, :, None, None]
    if demodulate:
      w_hat = w_hat * torch.rsqrt(w_hat.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
    if upsample:
      out = F.conv_transpose2d(x_nchw[b: b + 1], w_hat.transpose(0, 1), stride=2, padding=0)
      out = reference.upfirdn2d(out, reference.blur_kernel().double(), pad=(1, 1))
    else:
      out = F.conv2d(x_nchw[b: b + 1], w_hat, padding=kernel_size // 2)
    outputs.append(out)
  expected = torch.cat(outputs).permute(0, 2, 3, 1).numpy()
  assert got.shape == expected.shape == (batch, height * (2 if upsample else 1), width * (2 if upsample else 1), c_out)
  max_error = np.abs(got - expected).max()
  assert max_error <= 1e-4, max_error


def test_blur_kernel_matches_reference():
  np.testing.assert_array_equal(BLUR_KERNEL, reference.blur_kernel().numpy())


@pytest.mark.smoke
@pytest.mark.parametrize("resolution, aspect", [(32, 2), (16, 1)])
def test_output_shape(resolution, aspect):
  generator = Generator(resolution, aspect=aspect, style_dim=16, n_mlp=2, channel_divisor=32)
  w_plus = jnp.zeros((2, generator.n_latent, 16))
  variables = jax.eval_shape(generator.init, jax.random.key(0), w_plus)
  images = jax.eval_shape(generator.apply, variables, w_plus)
  assert images.shape == (2, resolution, resolution // aspect, 3)
  assert images.dtype == jnp.float32
  w = jax.eval_shape(lambda v, z: generator.apply(v, z, method=Generator.mapping), variables, jnp.ones((5, 16)))
  assert w.shape == (5, 16)


@pytest.mark.parametrize("aspect", [1, 2])
def test_full_size_variables_match_key_table(aspect):
  weights, buffers = rosinality_key_shapes(1024, aspect=aspect)
  if aspect == 1:  # numbers documented in docs/weight_formats.md §1.3 for FFHQ-1024, as a check of the table above
    assert len(weights) + len(buffers) == 171
    assert sum(math.prod(s) for s in weights.values()) + sum(math.prod(s) for s in buffers.values()) == 33_166_492
  generator = Generator(1024, aspect=aspect)
  variables = jax.eval_shape(generator.init, jax.random.key(0), jnp.zeros((1, 18, 512)))
  assert set(variables) == {"params", "noise"}
  n_params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))
  assert n_params == sum(math.prod(s) for s in weights.values())
  noise_shapes = {k: v for k, v in buffers.items() if k.startswith("noises.")}
  assert {f"noises.{k}": (1, 1) + leaf.shape[1:3] for k, leaf in variables["noise"].items()} == noise_shapes
  assert all(leaf.shape[3] == 1 for leaf in variables["noise"].values())

  state_dict = {k: np.broadcast_to(np.float32(0), s) for k, s in {**weights, **noise_shapes}.items()}
  state_dict.update({k: BLUR_KERNEL for k in buffers if k.endswith(".kernel")})
  params, noise = convert_generator(state_dict)
  shapes = lambda tree: jax.tree.map(lambda a: tuple(a.shape), tree)
  assert shapes({"params": params, "noise": noise}) == shapes(variables)


def test_vmap_and_checkpoint():
  generator = Generator(8, style_dim=8, n_mlp=1, channel_divisor=64)
  w_plus = jax.random.normal(jax.random.key(1), (4, generator.n_latent, 8))
  rng = np.random.default_rng(0)  # random values everywhere, nonzero noise strengths and biases included
  shapes = jax.eval_shape(generator.init, jax.random.key(0), w_plus)
  variables = jax.tree.map(lambda s: rng.standard_normal(s.shape, dtype=np.float32), shapes)
  forward = lambda w: generator.apply(variables, w)
  batched = jax.jit(forward)(w_plus)
  mapped = jax.jit(jax.vmap(lambda w: forward(w[None])[0]))(w_plus)
  np.testing.assert_allclose(mapped, batched, atol=1e-5, rtol=0)
  loss = lambda f: lambda w: jnp.sum(jnp.sin(f(w)))
  grad_plain = jax.jit(jax.grad(loss(forward)))(w_plus)
  grad_remat = jax.jit(jax.grad(loss(jax.checkpoint(forward))))(w_plus)
  assert float(jnp.abs(grad_plain).max()) > 0
  np.testing.assert_allclose(grad_remat, grad_plain, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("aspect", [1, 2])
def test_parity_with_torch_reference(aspect):
  torch.manual_seed(aspect)
  config = dict(style_dim=32, n_mlp=2, channel_divisor=16, aspect=aspect)
  torch_generator = reference.Generator(32, **config)
  state_dict = torch_generator.state_dict()
  weights, buffers = rosinality_key_shapes(32, **config)
  assert {k: tuple(v.shape) for k, v in state_dict.items()} == {**weights, **buffers}
  with torch.no_grad():  # zero-initialised noise strengths and biases would otherwise go untested
    for key, value in state_dict.items():
      if key.endswith(("bias", "noise.weight")):
        value.add_(0.5 * torch.randn_like(value))
  params, noise = convert_generator(state_dict)
  generator = Generator(32, **config)

  w_plus = torch.randn(3, generator.n_latent, 32)
  z = torch.randn(3, 32)
  with torch.no_grad():
    expected_images = torch_generator(w_plus).permute(0, 2, 3, 1).numpy()
    expected_w = torch_generator.style(z).numpy()
  variables = {"params": params, "noise": noise}
  with jax.default_matmul_precision("highest"):  # no TF32 on GPUs
    images = np.asarray(generator.apply(variables, jnp.asarray(w_plus.numpy())))
    w = np.asarray(generator.apply(variables, jnp.asarray(z.numpy()), method=Generator.mapping))
  assert images.shape == (3, 32, 32 // aspect, 3)
  image_error, w_error = np.abs(images - expected_images).max(), np.abs(w - expected_w).max()
  print(f"aspect {aspect}: image max abs error {image_error:.2e} (max |image| {np.abs(expected_images).max():.2f}), "
        f"mapping max abs error {w_error:.2e}")
  assert image_error <= 1e-4
  assert w_error <= 1e-4
