"""Kinds `stylegan2` and `stylegan2-ada`: tiny fixtures in the original on-disk formats, ported through the CLI,
loaded with vidstyleode_jax.ported and rendered by our Generator against the torch references; full-size key tables
against the Generator's `jax.eval_shape`."""

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from port_weights import stylegan2, stylegan2_ada
from port_weights.__main__ import main
from tests.reference import nv_stylegan2
from tests.reference import rosinality_stylegan2
from tests.test_stylegan2 import rosinality_key_shapes
from vidstyleode_jax import ported
from vidstyleode_jax.models.stylegan2 import BLUR_KERNEL, Generator

STYLE_DIM = 16


def randomized_rosinality(size, aspect, seed):
  """A tiny rosinality generator with every zero-initialised tensor randomised."""
  torch.manual_seed(seed)
  generator = rosinality_stylegan2.Generator(size, style_dim=STYLE_DIM, n_mlp=2, channel_divisor=32, aspect=aspect)
  with torch.no_grad():
    for key, value in generator.state_dict().items():
      if key.endswith(("bias", "noise.weight")):
        value.add_(0.5 * torch.randn_like(value))
  return generator


def port_and_load(kind, src, dst, *options):
  assert main([kind, str(src), str(dst), *options]) == 0
  architecture, variables = ported.load(str(dst), kind=kind)
  return ported.build_module(architecture), architecture, variables


def render(generator, variables, w_plus, z):
  """Our images [batch, h, w, 3] from W+ and mapped w [batch, style_dim] from z, in float32 at highest precision."""
  with jax.default_matmul_precision("highest"):
    images = generator.apply(variables, jnp.asarray(w_plus))
    w = generator.apply(variables, jnp.asarray(z), method=Generator.mapping)
  return np.asarray(images), np.asarray(w)


@pytest.mark.parametrize("size, aspect", [(32, 1), (32, 2)])
def test_rosinality_parity_through_cli(tmp_path, size, aspect):
  torch_generator = randomized_rosinality(size, aspect, seed=aspect)
  latent_avg = torch.randn(STYLE_DIM)
  torch.save({"g_ema": torch_generator.state_dict(), "latent_avg": latent_avg}, tmp_path / "ffhq.pt")
  generator, architecture, variables = port_and_load("stylegan2", tmp_path / "ffhq.pt", tmp_path / "out")

  assert architecture["fields"] == dict(resolution=size, aspect=aspect, style_dim=STYLE_DIM, n_mlp=2,
                                        channel_multiplier=2, channel_divisor=32, lr_mlp=0.01)
  assert architecture["source_entry"] == "g_ema"
  np.testing.assert_array_equal(variables["latent_avg"]["w"], latent_avg.numpy())
  w_plus, z = torch.randn(3, generator.n_latent, STYLE_DIM), torch.randn(3, STYLE_DIM)
  with torch.no_grad():
    expected_images = torch_generator(w_plus).permute(0, 2, 3, 1).numpy()
    expected_w = torch_generator.style(z).numpy()
  images, w = render(generator, variables, w_plus.numpy(), z.numpy())
  assert images.shape == (3, size, size // aspect, 3)
  image_error, w_error = np.abs(images - expected_images).max(), np.abs(w - expected_w).max()
  print(f"rosinality {size}x{size // aspect}: image max abs error {image_error:.2e} "
        f"(max |image| {np.abs(expected_images).max():.2f}), mapping {w_error:.2e}")
  assert image_error <= 1e-4
  assert w_error <= 1e-4


def test_rosinality_generator_choice_and_training_snapshot(tmp_path):
  """--generator g picks the non-EMA weights; a snapshot with argparse.Namespace `args` loads with weights_only."""
  g_ema, g = randomized_rosinality(16, 1, seed=0), randomized_rosinality(16, 1, seed=1)
  torch.save({"g": g.state_dict(), "g_ema": g_ema.state_dict(), "d": {"convs.0.0.weight": torch.zeros(2, 3, 1, 1)},
              "g_optim": torch.optim.Adam(g.parameters()).state_dict(), "args": argparse.Namespace(size=16, n_mlp=2),
              "ada_aug_p": 0.1}, tmp_path / "snapshot.pt")
  for entry, torch_generator in (("g_ema", g_ema), ("g", g)):
    _, architecture, variables = port_and_load("stylegan2", tmp_path / "snapshot.pt", tmp_path / entry,
                                               "--generator", entry)
    assert architecture["source_entry"] == entry
    assert "latent_avg" not in variables and not architecture["has_latent_avg"]
    expected = torch_generator.state_dict()["input.input"].permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(variables["params"]["input"], expected)


def nv_generator(conv_clamp, seed=0):
  torch.manual_seed(seed)
  generator = nv_stylegan2.Generator(STYLE_DIM, STYLE_DIM, 32, aspect=2, num_mapping_layers=2, channel_base=512,
                                     channel_max=16, conv_clamp=conv_clamp)
  nv_stylegan2.randomize_(generator, torch.Generator().manual_seed(seed + 1))
  return generator


@pytest.mark.parametrize("conv_clamp", [256.0, 0.5])
def test_stylegan_human_pickle_parity_through_cli(tmp_path, conv_clamp):
  """StyleGAN-Human layout (32x16, not square); conv_clamp 256 as released, and 0.5 so that the clamp is active."""
  torch_generator = nv_generator(conv_clamp)
  nv_stylegan2.write_network_pickle(str(tmp_path / "human.pkl"), torch_generator,
                                    {"G": nv_generator(conv_clamp, seed=5), "D": torch.nn.Linear(2, 2)})
  generator, architecture, variables = port_and_load("stylegan2-ada", tmp_path / "human.pkl", tmp_path / "out")

  assert architecture["fields"] == dict(resolution=32, aspect=2, style_dim=STYLE_DIM, n_mlp=2, channel_multiplier=2,
                                        channel_divisor=32, lr_mlp=0.01, conv_clamp=conv_clamp)
  np.testing.assert_array_equal(variables["latent_avg"]["w"], torch_generator.mapping.w_avg.numpy())
  w_plus, z = torch.randn(3, generator.n_latent, STYLE_DIM), torch.randn(3, STYLE_DIM)
  with torch.no_grad():
    expected_images = torch_generator(w_plus).permute(0, 2, 3, 1).numpy()
    expected_w = torch_generator.mapping(z).numpy()
  images, w = render(generator, variables, w_plus.numpy(), z.numpy())
  assert images.shape == (3, 32, 16, 3)
  image_error, w_error = np.abs(images - expected_images).max(), np.abs(w - expected_w).max()
  print(f"StyleGAN-Human pickle, conv_clamp {conv_clamp}: image max abs error {image_error:.2e} "
        f"(max |image| {np.abs(expected_images).max():.2f}), mapping {w_error:.2e}")
  assert image_error <= 1e-4
  assert w_error <= 1e-4
  if conv_clamp < 1:  # the clamp must matter for this case to test it
    unclamped, _ = render(Generator(**dict(architecture["fields"], conv_clamp=None)), variables, w_plus.numpy(),
                          z.numpy())
    assert np.abs(unclamped - images).max() > 0.1


def nv_key_shapes(resolution, aspect, w_dim=512, num_layers=8, channel_base=32768, channel_max=512):
  """The G_ema key table of docs/weight_formats.md §2.2: {key: shape}."""
  channels = lambda r: min(channel_base // r, channel_max)
  shapes = {}
  for r in [2**i for i in range(2, int(math.log2(resolution)) + 1)]:
    block = f"synthesis.b{r}"
    if r == 4:
      shapes[f"{block}.const"] = (channels(4), 4, 4 // aspect)
    shapes[f"{block}.resample_filter"] = (4, 4)
    for layer, c_in in (("conv0", channels(r // 2)), ("conv1", channels(r))):
      if r == 4 and layer == "conv0":
        continue
      shapes.update({f"{block}.{layer}.weight": (channels(r), c_in, 3, 3), f"{block}.{layer}.bias": (channels(r),),
                     f"{block}.{layer}.noise_strength": (), f"{block}.{layer}.resample_filter": (4, 4),
                     f"{block}.{layer}.noise_const": (r, r // aspect),
                     f"{block}.{layer}.affine.weight": (c_in, w_dim), f"{block}.{layer}.affine.bias": (c_in,)})
    shapes.update({f"{block}.torgb.weight": (3, channels(r), 1, 1), f"{block}.torgb.bias": (3,),
                   f"{block}.torgb.affine.weight": (channels(r), w_dim), f"{block}.torgb.affine.bias": (channels(r),)})
  shapes["mapping.w_avg"] = (w_dim,)
  for i in range(num_layers):
    shapes.update({f"mapping.fc{i}.weight": (w_dim, w_dim), f"mapping.fc{i}.bias": (w_dim,)})
  return shapes


def test_nv_key_table_matches_reference_module():
  """The table above describes the same layout as the fixture module (so the full-size test checks the real one)."""
  torch_generator = nv_stylegan2.Generator(16, 16, 32, aspect=2, num_mapping_layers=2, channel_base=256,
                                           channel_max=16)
  expected = nv_key_shapes(32, 2, w_dim=16, num_layers=2, channel_base=256, channel_max=16)
  assert {key: tuple(value.shape) for key, value in torch_generator.state_dict().items()} == expected


def test_full_size_ffhq_1024_passes_completeness_check():
  weights, buffers = rosinality_key_shapes(1024)
  state_dict = {key: np.broadcast_to(np.float32(0), shape) for key, shape in {**weights, **buffers}.items()}
  state_dict.update({key: BLUR_KERNEL for key in buffers if key.endswith(".kernel")})
  assert len(state_dict) == 171
  fields = stylegan2.infer_fields(state_dict, "ffhq.pt")
  assert fields == dict(resolution=1024, aspect=1, style_dim=512, n_mlp=8, channel_multiplier=2, channel_divisor=1)
  variables = stylegan2.generator_variables(state_dict, fields, "ffhq.pt", latent_avg=np.zeros(512))
  assert sum(leaf.size for leaf in jax.tree.leaves(variables["params"])) == sum(map(math.prod, weights.values()))


def test_full_size_stylegan_human_1024x512_passes_completeness_check():
  shapes = nv_key_shapes(1024, 2)
  tensors = {key: np.broadcast_to(np.float32(0), shape) for key, shape in shapes.items()}
  tensors.update({key: BLUR_KERNEL / 4 for key in shapes if key.endswith("resample_filter")})
  state_dict, source_of, unknown, w_avg = stylegan2_ada.to_rosinality(tensors, "human.pkl")
  assert not unknown and w_avg.shape == (512,)
  assert len(state_dict) == 171 - 2 * 8  # rosinality keys without the 16 FIR buffers (dropped after their check)
  fields = stylegan2.infer_fields(state_dict, "human.pkl")
  assert fields == dict(resolution=1024, aspect=2, style_dim=512, n_mlp=8, channel_multiplier=2, channel_divisor=1)
  variables = stylegan2.generator_variables(dict(state_dict), dict(fields, conv_clamp=256.0), "human.pkl", w_avg,
                                            source_of)
  assert variables["noise"]["noise_16"].shape == (1, 1024, 512, 1)
