"""pSp encoder and kind `psp`: a tiny pixel2style2pixel checkpoint in the original key layout and on-disk format,
ported through the CLI and run against the torch reference; the full-size IR-SE50 key table against `jax.eval_shape`
of PSPEncoder(); bad inputs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from port_weights import psp as psp_port
from port_weights.__main__ import main
from port_weights.output import check_variables
from tests.reference import psp_encoder, rosinality_stylegan2
from vidstyleode_jax import ported
from vidstyleode_jax.models.psp import PSPEncoder

DEPTHS = (16, 16, 32, 32)  # stages 1 and 2 share a depth, so unit 3 has a max-pool shortcut as unit 0 does
STYLE_DIM = DEPTHS[-1]
DECODER_SIZE = 32  # n_styles = 2 * log2(32) - 2 = 8: 3 coarse, 4 medium and 1 fine block


def psp_encoder_key_shapes(depths=(64, 128, 256, 512), n_styles=18, input_nc=3):
  """The encoder key table of docs/weight_formats.md §3.2 (keys without the `encoder.` prefix): {key: shape}."""
  shapes = {}

  def batch_norm(name, channels):
    shapes.update({f"{name}.{tensor}": (channels,) for tensor in ("weight", "bias", "running_mean", "running_var")})
    shapes[f"{name}.num_batches_tracked"] = ()

  shapes["input_layer.0.weight"] = (depths[0], input_nc, 3, 3)
  batch_norm("input_layer.1", depths[0])
  shapes["input_layer.2.weight"] = (depths[0],)
  c_in, n = depths[0], 0
  for depth, units in zip(depths, (3, 4, 14, 3)):
    for _ in range(units):
      batch_norm(f"body.{n}.res_layer.0", c_in)
      shapes[f"body.{n}.res_layer.1.weight"] = (depth, c_in, 3, 3)
      shapes[f"body.{n}.res_layer.2.weight"] = (depth,)
      shapes[f"body.{n}.res_layer.3.weight"] = (depth, depth, 3, 3)
      batch_norm(f"body.{n}.res_layer.4", depth)
      shapes[f"body.{n}.res_layer.5.fc1.weight"] = (depth // 16, depth, 1, 1)
      shapes[f"body.{n}.res_layer.5.fc2.weight"] = (depth, depth // 16, 1, 1)
      if c_in != depth:
        shapes[f"body.{n}.shortcut_layer.0.weight"] = (depth, c_in, 1, 1)
        batch_norm(f"body.{n}.shortcut_layer.1", depth)
      c_in, n = depth, n + 1
  width = depths[3]
  for i in range(n_styles):
    spatial = 16 if i < 3 else 32 if i < 7 else 64
    for m in range(int(math.log2(spatial))):
      shapes[f"styles.{i}.convs.{2 * m}.weight"] = (width, width, 3, 3)
      shapes[f"styles.{i}.convs.{2 * m}.bias"] = (width,)
    shapes[f"styles.{i}.linear.weight"] = (width, width)
    shapes[f"styles.{i}.linear.bias"] = (width,)
  shapes.update({"latlayer1.weight": (width, depths[2], 1, 1), "latlayer1.bias": (width,),
                 "latlayer2.weight": (width, depths[1], 1, 1), "latlayer2.bias": (width,)})
  return shapes


def tiny_psp(seed=0):
  """A tiny pSp with randomised BN statistics, PReLU slopes and biases in encoder and decoder, and a latent_avg."""
  torch.manual_seed(seed)
  encoder = psp_encoder.GradualStyleEncoder(DEPTHS, n_styles=2 * int(math.log2(DECODER_SIZE)) - 2)
  psp_encoder.randomize_(encoder, torch.Generator().manual_seed(seed + 1))
  decoder = rosinality_stylegan2.Generator(DECODER_SIZE, style_dim=STYLE_DIM, n_mlp=2, channel_divisor=32)
  with torch.no_grad():
    for key, value in decoder.state_dict().items():
      if key.endswith(("bias", "noise.weight")):
        value.add_(0.5 * torch.randn_like(value))
  latent_avg = torch.randn(decoder.n_latent, STYLE_DIM)
  return psp_encoder.PSP(encoder, decoder, latent_avg).eval()


def save_psp(net, path, **opts):
  """pSp's `__get_save_dict` layout: state_dict, opts (a plain dict) and latent_avg when it is set."""
  opts = dict(encoder_type="GradualStyleEncoder", input_nc=3, label_nc=0, output_size=DECODER_SIZE,
              start_from_latent_avg=net.latent_avg is not None, learn_in_w=False, dataset_type="ffhq_encode", **opts)
  checkpoint = {"state_dict": net.state_dict(), "opts": opts}
  if net.latent_avg is not None:
    checkpoint["latent_avg"] = net.latent_avg
  torch.save(checkpoint, path)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
  net = tiny_psp()
  path = tmp_path_factory.mktemp("psp") / "psp_tiny.pt"
  save_psp(net, path)
  return net, path


def test_psp_parity_through_cli(tiny_checkpoint, tmp_path):
  net, path = tiny_checkpoint
  assert main(["psp", str(path), str(tmp_path / "out")]) == 0
  architecture, variables = ported.load(str(tmp_path / "out"), kind="psp")
  encoder = ported.build_module(architecture)
  decoder = ported.build_module(architecture["decoder"])

  assert architecture["fields"] == dict(n_styles=8, style_dim=STYLE_DIM, stage_channels=list(DEPTHS),
                                        stage_units=[3, 4, 14, 3], input_size=256, add_latent_avg=True)
  assert architecture["decoder"]["fields"]["resolution"] == DECODER_SIZE
  assert sorted(variables) == ["batch_stats", "decoder", "latent_avg", "params"]
  np.testing.assert_array_equal(variables["latent_avg"]["w_plus"], net.latent_avg.numpy())
  images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(3)) * 2 - 1
  with torch.no_grad():
    expected_codes = net.encode(images).numpy()
    expected_images = net.decoder(torch.from_numpy(expected_codes)).permute(0, 2, 3, 1).numpy()
  with jax.default_matmul_precision("highest"):
    codes = np.asarray(encoder.apply(variables, jnp.asarray(images.permute(0, 2, 3, 1).numpy())))
    decoded = np.asarray(decoder.apply(variables["decoder"], jnp.asarray(expected_codes)))
  code_error = np.abs(codes - expected_codes).max()
  image_error = np.abs(decoded - expected_images).max()
  print(f"pSp tiny: W+ max abs error {code_error:.2e} (max |W+| {np.abs(expected_codes).max():.2f}, "
        f"W+ std without latent_avg {np.std(expected_codes - net.latent_avg.numpy()):.2f}); "
        f"decoder image max abs error {image_error:.2e}")
  assert codes.shape == (2, 8, STYLE_DIM)
  assert code_error <= 1e-4
  assert image_error <= 1e-4


def test_psp_without_latent_avg(tmp_path):
  """start_from_latent_avg False: nothing is added, no latent_avg collection (the codes are the encoder's own)."""
  net = tiny_psp(seed=4)
  net.latent_avg = None
  save_psp(net, tmp_path / "psp.pt")
  assert main(["psp", str(tmp_path / "psp.pt"), str(tmp_path / "out")]) == 0
  architecture, variables = ported.load(str(tmp_path / "out"), kind="psp")
  assert not architecture["fields"]["add_latent_avg"] and "latent_avg" not in variables
  assert set(variables["batch_stats"]["unit_3"]) == {"bn_in", "bn_out"}  # a max-pool shortcut: same depth
  assert set(variables["batch_stats"]["unit_7"]) == {"bn_in", "bn_out", "shortcut_bn"}


def test_reference_key_table_matches_the_specification():
  """The §3.2 table builder describes the same layout as the fixture module (so the full-size test checks the real
  one), and the shortcut convs sit exactly at units 3, 7 and 21 at full size."""
  encoder = psp_encoder.GradualStyleEncoder(DEPTHS, n_styles=8)
  assert {key: tuple(value.shape) for key, value in encoder.state_dict().items()} == psp_encoder_key_shapes(
      DEPTHS, n_styles=8)
  shortcuts = {key.split(".")[1] for key in psp_encoder_key_shapes() if "shortcut_layer.0" in key}
  assert shortcuts == {"3", "7", "21"}


def test_full_size_ir_se50_passes_completeness_check():
  shapes = psp_encoder_key_shapes()
  assert len(shapes) == 621
  parameters = sum(math.prod(shape) for key, shape in shapes.items()
                   if not key.endswith(("running_mean", "running_var", "num_batches_tracked")))
  assert parameters == 267_136_704
  state_dict = {key: np.broadcast_to(np.float32(0), shape) for key, shape in shapes.items()}
  fields, variables = psp_port.encoder_variables(state_dict, "psp_ffhq_encode.pt", 3, np.zeros((18, 512), np.float32))
  assert fields == dict(n_styles=18, style_dim=512, stage_channels=[64, 128, 256, 512], stage_units=[3, 4, 14, 3],
                        input_size=256, add_latent_avg=True)
  assert sum(leaf.size for leaf in jax.tree.leaves(variables["params"])) == parameters
  check_variables(variables, psp_port.expected_encoder_variables(PSPEncoder(), 3), "psp_ffhq_encode.pt")


@pytest.mark.parametrize("edit, expected", [
    ("rename", ["unexpected key(s): 'encoder.body.5.res_layer.2.slope'",
                "missing key(s): params/unit_5/prelu/weight [16]"]),
    ("reshape", ["key 'encoder.latlayer1.weight': expected shape (32, 32, 1, 1), found (33, 32, 1, 1) "
                 "(parameter params/lateral_c2/kernel)"]),
    ("reshape_decoder", ["source key 'decoder.to_rgbs.2.conv.modulation.bias'", "from source shape [17]"]),
    ("latent_avg", ["latent_avg/w_plus (source key 'latent_avg') has shape [1, 32]", "expected [8, 32]"]),
    ("learn_in_w", ["opts['learn_in_w'] is True"]),
])
def test_bad_inputs_name_the_key_and_shapes(tiny_checkpoint, tmp_path, capsys, edit, expected):
  checkpoint = torch.load(tiny_checkpoint[1], weights_only=True)
  state_dict = checkpoint["state_dict"]
  if edit == "rename":
    state_dict["encoder.body.5.res_layer.2.slope"] = state_dict.pop("encoder.body.5.res_layer.2.weight")
  elif edit == "reshape":
    state_dict["encoder.latlayer1.weight"] = torch.zeros(33, 32, 1, 1)
  elif edit == "reshape_decoder":
    state_dict["decoder.to_rgbs.2.conv.modulation.bias"] = torch.zeros(17)
  elif edit == "latent_avg":
    checkpoint["latent_avg"] = checkpoint["latent_avg"][:1]
  else:
    checkpoint["opts"]["learn_in_w"] = True
  torch.save(checkpoint, tmp_path / "bad.pt")
  assert main(["psp", str(tmp_path / "bad.pt"), str(tmp_path / "out")]) == 1
  message = capsys.readouterr().err
  for part in expected:
    assert part in message
  assert str(tmp_path / "bad.pt") in message
  assert not (tmp_path / "out").exists()
