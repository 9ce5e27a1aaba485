"""`python -m port_weights raft`: torchvision-layout RAFT state dicts (random weights) ported and run against our
PyTorch reference of torchvision's RAFT (tests/reference/raft.py), for raft_large and raft_small."""

import jax
import numpy as np
import pytest
import skimage.data
import skimage.transform
import torch

from port_weights.__main__ import main as port_main
from tests.reference import raft as raft_reference
from vidstyleode_jax import ported

FLOW_TOLERANCE_PX = 1e-3
NUM_FLOW_UPDATES = 4
HEIGHT, WIDTH = 128, 160


@pytest.fixture(autouse=True)
def float32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def image_pair():
  """Two real-image pairs in [-1, 1], [2, 128, 160, 3]: a photo and the same photo moved by (3, -2) px; two photos."""
  photos = [skimage.transform.resize(photo, (HEIGHT + 8, WIDTH + 8), anti_aliasing=True)
            for photo in (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee())]
  first = np.stack([photos[0][4:-4, 4:-4], photos[1][4:-4, 4:-4]])
  second = np.stack([photos[0][6:HEIGHT + 6, 1:WIDTH + 1], photos[2][4:-4, 4:-4]])
  return (2 * first - 1).astype(np.float32), (2 * second - 1).astype(np.float32)


def reference_model(config, seed):
  """torchvision's layout with random weights and random BatchNorm statistics (raft_large's context encoder)."""
  torch.manual_seed(seed)
  model = raft_reference.RAFT(config).eval()
  with torch.no_grad():
    for name, buffer in model.named_buffers():
      if name.endswith("running_mean"):
        buffer.copy_(0.1 * torch.randn_like(buffer))
      elif name.endswith("running_var"):
        buffer.copy_(0.5 + torch.rand_like(buffer))
  return model


@pytest.mark.parametrize("variant, config", [("large", raft_reference.LARGE), ("small", raft_reference.SMALL)])
def test_raft_parity_through_cli(tmp_path, variant, config):
  model = reference_model(config, seed=0)
  torch.save(model.state_dict(), tmp_path / f"raft_{variant}.pth")
  assert port_main(["raft", str(tmp_path / f"raft_{variant}.pth"), str(tmp_path / "ported")]) == 0
  architecture, variables = ported.load(str(tmp_path / "ported"), kind="raft")
  assert architecture["fields"] == {"variant": variant}
  assert ("batch_stats" in variables) == (variant == "large")
  module = ported.build_module(architecture).clone(num_flow_updates=NUM_FLOW_UPDATES)

  image1, image2 = image_pair()
  with torch.no_grad():
    to_torch = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2)
    expected = model(to_torch(image1), to_torch(image2), NUM_FLOW_UPDATES).permute(0, 2, 3, 1).numpy()
  got = np.asarray(jax.jit(module.apply)(variables, image1, image2))
  error = np.abs(got - expected).max()
  print(f"raft_{variant}: flow max abs error {error:.2e} px (flows up to {np.abs(expected).max():.2f} px)")
  assert got.shape == (2, HEIGHT, WIDTH, 2)
  assert np.abs(expected).max() > 0.5  # the comparison is not between near-zero flows
  assert error <= FLOW_TOLERANCE_PX


def test_raft_bad_inputs_name_the_key(tmp_path, capsys):
  state_dict = reference_model(raft_reference.SMALL, seed=1).state_dict()
  state_dict["update_block.flow_head.conv2.bias"] = torch.zeros(3)
  torch.save(state_dict, tmp_path / "shape.pth")
  assert port_main(["raft", str(tmp_path / "shape.pth"), str(tmp_path / "out")]) == 1
  err = capsys.readouterr().err
  assert "shape.pth" in err and "'update_block.flow_head.conv2.bias'" in err and "[3]" in err and "[2]" in err, err

  torch.save({"module.fnet.conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "princeton.pth")
  assert port_main(["raft", str(tmp_path / "princeton.pth"), str(tmp_path / "out")]) == 1
  assert "princeton-vl/RAFT layout" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()
