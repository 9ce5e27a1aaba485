"""`python -m port_weights vgg`: a torchvision-layout VGG16 state dict (random weights, narrow widths) ported and run
against our PyTorch reference of torchvision's VGG16 (tests/reference/vgg.py): the four block outputs of the
perceptual loss."""

import jax
import numpy as np
import pytest
import skimage.data
import skimage.transform
import torch

from port_weights.__main__ import main as port_main
from tests.reference import vgg as vgg_reference
from vidstyleode_jax import ported
from vidstyleode_jax.models import dino

WIDTHS = (8, 16, 24, 32, 40)  # block 5 is in the file and dropped by the port
TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def float32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def reference_model(seed):
  """torchvision's layout, small widths and classifier, random weights (conv biases included)."""
  torch.manual_seed(seed)
  model = vgg_reference.VGG16(WIDTHS, hidden=16, num_classes=10).eval()
  with torch.no_grad():
    for parameter in model.parameters():
      parameter.copy_(0.2 * torch.randn_like(parameter))
  return model


def images():
  """Two real photos in [0, 1], [2, 52, 36, 3] (odd sizes after pooling exercise the floor)."""
  photos = [skimage.data.astronaut(), skimage.data.chelsea()]
  return np.stack([skimage.transform.resize(p, (52, 36), anti_aliasing=True) for p in photos]).astype(np.float32)


def test_vgg_parity_through_cli(tmp_path):
  model = reference_model(seed=0)
  torch.save(model.state_dict(), tmp_path / "vgg16.pth")
  assert port_main(["vgg", str(tmp_path / "vgg16.pth"), str(tmp_path / "ported")]) == 0
  architecture, variables = ported.load(str(tmp_path / "ported"), kind="vgg")
  assert architecture["fields"] == {"widths": list(WIDTHS[:4])}
  module = ported.build_module(architecture)

  x = images()
  normalised = (x - np.asarray(dino.IMAGENET_MEAN)) / np.asarray(dino.IMAGENET_STD)
  with torch.no_grad():
    expected = model.block_outputs(torch.from_numpy(normalised.astype(np.float32)).permute(0, 3, 1, 2))
  got = jax.jit(module.apply)(variables, x)
  assert [tuple(g.shape) for g in got] == [(2, 52, 36, 8), (2, 26, 18, 16), (2, 13, 9, 24), (2, 6, 4, 32)]
  for level, (g, e) in enumerate(zip(got, expected)):
    e = e.permute(0, 2, 3, 1).numpy()
    error = np.abs(np.asarray(g) - e).max() / np.abs(e).max()
    print(f"relu{level + 1}: max relative error {error:.2e} (max |feature| {np.abs(e).max():.2f})")
    assert np.abs(e).max() > 0.1 and error < TOLERANCE


def test_vgg_bad_inputs_name_the_key(tmp_path, capsys):
  state_dict = reference_model(seed=1).state_dict()
  state_dict["features.12.bias"] = torch.zeros(5)
  torch.save(state_dict, tmp_path / "shape.pth")
  assert port_main(["vgg", str(tmp_path / "shape.pth"), str(tmp_path / "out")]) == 1
  err = capsys.readouterr().err
  assert "shape.pth" in err and "features.12.bias" in err and "[5]" in err and "[24]" in err, err

  with_bn = dict(reference_model(seed=1).state_dict(), **{"features.1.running_mean": torch.zeros(8)})
  torch.save(with_bn, tmp_path / "bn.pth")
  assert port_main(["vgg", str(tmp_path / "bn.pth"), str(tmp_path / "out")]) == 1
  assert "vgg16_bn" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()
