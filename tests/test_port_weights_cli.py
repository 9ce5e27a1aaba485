"""The `python -m port_weights` CLI: argument handling, bad inputs, the restricted unpickler, atomic output, and the
ported-weights folder round trip through vidstyleode_jax.ported."""

import hashlib
import importlib
import os
import pickle
import subprocess
import sys

import flax.traverse_util
import numpy as np
import pytest
import torch

from tests.conftest import REPO
from port_weights import __main__ as cli
from port_weights import output
from tests.reference import nv_stylegan2
from tests.reference import rosinality_stylegan2
from vidstyleode_jax import ported
from vidstyleode_jax.errors import UserError


@pytest.fixture(scope="module")
def rosinality_state_dict():
  torch.manual_seed(0)
  return rosinality_stylegan2.Generator(16, style_dim=8, n_mlp=1, channel_divisor=32).state_dict()


def run_cli(capsys, *argv):
  """(exit status, stderr) of the CLI."""
  status = cli.main([str(arg) for arg in argv])
  return status, capsys.readouterr().err


@pytest.mark.smoke
def test_kind_help_through_python_m():
  result = subprocess.run([sys.executable, "-m", "port_weights", "stylegan2", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "--generator" in result.stdout and "SRC" in result.stdout and "DST" in result.stdout


def test_wrong_kind_names_valid_kinds(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["stylegan3", str(tmp_path / "a.pt"), str(tmp_path / "out")])
  assert exit_info.value.code != 0
  err = capsys.readouterr().err
  assert "stylegan3" in err and all(kind in err for kind in cli.KINDS)


def test_unavailable_kind_is_reported(tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(cli.KINDS, "clip", ("port_weights.no_such_module", "test"))
  status, err = run_cli(capsys, "clip", tmp_path / "a.pt", tmp_path / "out")
  assert status != 0 and "kind 'clip' is not available" in err
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["stylegan2", "stylegan2-ada"])
def test_missing_source_file(tmp_path, capsys, kind):
  status, err = run_cli(capsys, kind, tmp_path / "nothing.pt", tmp_path / "out")
  assert status != 0 and str(tmp_path / "nothing.pt") in err and "no such file" in err
  assert not (tmp_path / "out").exists()


def test_from_package_takes_the_place_of_src(tmp_path, capsys, monkeypatch):
  """(The packaged files themselves are ported in tests/test_evaluate.py.)"""
  status, err = run_cli(capsys, "i3d", tmp_path / "a.ckpt", tmp_path / "out", "--from-package")
  assert status == 1 and "give SRC" in err and "or --from-package, not both" in err
  status, err = run_cli(capsys, "i3d", tmp_path / "out")
  assert status == 1 and "give SRC, the checkpoint to port, or --from-package" in err
  monkeypatch.setattr(importlib.import_module("port_weights.i3d"), "PACKAGED_SOURCE", ("no_such_package", "w.ckpt"))
  status, err = run_cli(capsys, "i3d", "--from-package", tmp_path / "out")
  assert status == 1 and "the package 'no_such_package' is not installed" in err
  assert not (tmp_path / "out").exists()


def test_existing_destination_is_left_alone(tmp_path, capsys, rosinality_state_dict):
  torch.save({"g_ema": rosinality_state_dict}, tmp_path / "a.pt")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep").write_text("x")
  status, err = run_cli(capsys, "stylegan2", tmp_path / "a.pt", tmp_path / "out")
  assert status != 0 and "already exists" in err
  assert os.listdir(tmp_path / "out") == ["keep"]


def test_truncated_files(tmp_path, capsys, rosinality_state_dict):
  torch.save({"g_ema": rosinality_state_dict}, tmp_path / "full.pt")
  torch_generator = nv_stylegan2.Generator(8, 8, 8, num_mapping_layers=1, channel_base=64, channel_max=8)
  nv_stylegan2.write_network_pickle(str(tmp_path / "full.pkl"), torch_generator)
  for kind, name in (("stylegan2", "full.pt"), ("stylegan2-ada", "full.pkl")):
    data = (tmp_path / name).read_bytes()
    (tmp_path / f"half_{name}").write_bytes(data[: len(data) // 2])
    status, err = run_cli(capsys, kind, tmp_path / f"half_{name}", tmp_path / "out")
    assert status != 0 and str(tmp_path / f"half_{name}") in err and "truncated or corrupt" in err, err
    assert not (tmp_path / "out").exists()


def test_renamed_key(tmp_path, capsys, rosinality_state_dict):
  state_dict = dict(rosinality_state_dict)
  state_dict["convs.1.noise.wieght"] = state_dict.pop("convs.1.noise.weight")
  torch.save({"g_ema": state_dict}, tmp_path / "renamed.pt")
  status, err = run_cli(capsys, "stylegan2", tmp_path / "renamed.pt", tmp_path / "out")
  assert status != 0 and str(tmp_path / "renamed.pt") in err
  assert "unexpected key(s): 'convs.1.noise.wieght'" in err
  assert "missing key(s): params/convs_1/noise/weight [1]" in err
  assert not (tmp_path / "out").exists()


def test_changed_shape(tmp_path, capsys, rosinality_state_dict):
  state_dict = dict(rosinality_state_dict)
  state_dict["convs.1.activate.bias"] = torch.zeros(17)
  torch.save({"g_ema": state_dict}, tmp_path / "shape.pt")
  status, err = run_cli(capsys, "stylegan2", tmp_path / "shape.pt", tmp_path / "out")
  assert status != 0 and str(tmp_path / "shape.pt") in err
  assert ("shape mismatch: params/convs_1/activate/bias (source key 'convs.1.activate.bias') has shape [17] from "
          "source shape [17], expected [16]") in err
  assert not (tmp_path / "out").exists()


def test_changed_shape_in_network_pickle_names_the_nv_key(tmp_path, capsys):
  torch_generator = nv_stylegan2.Generator(8, 8, 8, num_mapping_layers=1, channel_base=64, channel_max=8)
  torch_generator.synthesis.b8.conv0.weight = torch.nn.Parameter(torch.zeros(8, 8, 3, 2))
  nv_stylegan2.write_network_pickle(str(tmp_path / "shape.pkl"), torch_generator)
  status, err = run_cli(capsys, "stylegan2-ada", tmp_path / "shape.pkl", tmp_path / "out")
  assert status != 0 and str(tmp_path / "shape.pkl") in err
  assert "(source key 'synthesis.b8.conv0.weight') has shape [3, 2, 8, 8] from source shape [8, 8, 3, 2], " \
         "expected [3, 3, 8, 8]" in err
  assert not (tmp_path / "out").exists()


def test_renamed_key_in_network_pickle(tmp_path, capsys):
  torch_generator = nv_stylegan2.Generator(8, 8, 8, num_mapping_layers=1, channel_base=64, channel_max=8)
  layer = torch_generator.synthesis.b8.conv1
  layer.noise_strenght = layer.noise_strength
  del layer.noise_strength
  nv_stylegan2.write_network_pickle(str(tmp_path / "renamed.pkl"), torch_generator)
  status, err = run_cli(capsys, "stylegan2-ada", tmp_path / "renamed.pkl", tmp_path / "out")
  assert status != 0 and str(tmp_path / "renamed.pkl") in err
  assert "unexpected key(s): 'synthesis.b8.conv1.noise_strenght'" in err
  assert "missing key(s): params/convs_1/noise/weight [1]" in err
  assert not (tmp_path / "out").exists()


def test_altered_fir_kernel_is_refused(tmp_path, capsys, rosinality_state_dict):
  state_dict = dict(rosinality_state_dict)
  state_dict["convs.0.conv.blur.kernel"] = state_dict["convs.0.conv.blur.kernel"] * 1.01
  torch.save({"g_ema": state_dict}, tmp_path / "fir.pt")
  status, err = run_cli(capsys, "stylegan2", tmp_path / "fir.pt", tmp_path / "out")
  assert status != 0 and "key 'convs.0.conv.blur.kernel' of shape [4, 4]" in err
  assert not (tmp_path / "out").exists()


class _Exploit:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("kind, save", [
    ("stylegan2-ada", lambda obj, path: path.write_bytes(pickle.dumps({"G_ema": obj}))),
    ("i3d", lambda obj, path: path.write_bytes(pickle.dumps({"params": obj, "batch_stats": {}}))),
    ("stylegan2", lambda obj, path: torch.save({"g_ema": obj}, path)),
])
def test_malicious_pickle_is_refused_without_running(tmp_path, capsys, kind, save):
  marker = tmp_path / "MARKER"
  save(_Exploit(marker), tmp_path / "evil.pkl")
  status, err = run_cli(capsys, kind, tmp_path / "evil.pkl", tmp_path / "out")
  assert status != 0 and str(tmp_path / "evil.pkl") in err and "refused to unpickle" in err, err
  assert "system" in err
  assert not marker.exists()
  assert not (tmp_path / "out").exists()


def test_exception_mid_write_leaves_nothing(tmp_path, monkeypatch, rosinality_state_dict):
  torch.save({"g_ema": rosinality_state_dict}, tmp_path / "a.pt")

  def fail(src):
    raise RuntimeError("disk full")

  monkeypatch.setattr(output, "source_sha256", fail)
  with pytest.raises(RuntimeError, match="disk full"):
    cli.main(["stylegan2", str(tmp_path / "a.pt"), str(tmp_path / "out")])
  assert sorted(os.listdir(tmp_path)) == ["a.pt"]


def test_write_then_load_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  variables = {"params": {"a": {"kernel": rng.standard_normal((3, 4)).astype(np.float32)},
                          "b": rng.standard_normal(5).astype(np.float32)},
               "noise": {"noise_0": rng.standard_normal((1, 4, 4, 1)).astype(np.float32)}}
  architecture = {"kind": "stylegan2", "module": "vidstyleode_jax.models.stylegan2.Generator",
                  "fields": {"resolution": 8, "channel_divisor": 64, "style_dim": 8, "n_mlp": 1}}
  (tmp_path / "src.pt").write_bytes(b"source bytes")
  ported_weights = output.Ported(variables, architecture, {"vocab.json": b"{}"})
  output.write(ported_weights, str(tmp_path / "src.pt"), str(tmp_path / "out"))

  loaded_architecture, loaded = ported.load(str(tmp_path / "out"), kind="stylegan2")
  assert loaded_architecture == architecture
  loaded_flat, written_flat = map(flax.traverse_util.flatten_dict, (loaded, variables))
  assert loaded_flat.keys() == written_flat.keys()
  for key, value in written_flat.items():
    assert loaded_flat[key].dtype == np.float32
    np.testing.assert_array_equal(loaded_flat[key], value)
  assert (tmp_path / "out" / "vocab.json").read_bytes() == b"{}"
  digest = (tmp_path / "out" / "source.sha256").read_text().split()
  assert digest == [hashlib.sha256(b"source bytes").hexdigest(), "src.pt"]
  assert ported.build_module(loaded_architecture).resolution == 8


def test_load_errors(tmp_path):
  with pytest.raises(UserError, match="no such ported-weights folder"):
    ported.load(str(tmp_path / "absent"))
  output.write(output.Ported({"params": {}}, {"kind": "dino", "module": "m", "fields": {}}),
               str(tmp_path), str(tmp_path / "dino"))
  with pytest.raises(UserError, match="kind 'dino', expected 'stylegan2'"):
    ported.load(str(tmp_path / "dino"), kind="stylegan2")
  os.remove(tmp_path / "dino" / "variables.msgpack")
  with pytest.raises(UserError, match="variables.msgpack: missing"):
    ported.load(str(tmp_path / "dino"))
