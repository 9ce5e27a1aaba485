"""A mismatched config fails before anything is built or compiled, with one line naming the fields."""

import os

import pytest

from configs import fashion
from vidstyleode_jax import config_validation
from vidstyleode_jax import train
from vidstyleode_jax.errors import UserError


def test_token_count_mismatch_fails_before_compiling(config, tmp_path):
  config.modulation.num_dynamics_tokens = 20
  workdir = tmp_path / "run"
  with pytest.raises(UserError) as error:
    train.train(config, str(workdir), progress=False)
  message = str(error.value)
  assert "\n" not in message
  assert "modulation.num_dynamics_tokens=20" in message and "dynamics" in message and "16 cells" in message
  assert not os.path.exists(workdir)  # nothing was built


@pytest.mark.parametrize(
    "field, value, names",
    [
        ("clip.embed_dim", 32, ["clip.embed_dim=32", "modulation.width=64"]),
        ("mapper.group_sizes", (2, 2, 2), ["mapper.group_sizes", "8 W+ layers", "generator.resolution=32"]),
        ("mapper.group_depths", (2, 0, 2), ["mapper.group_depths=(2, 0, 2)", "at least 1"]),
        ("data.frames_decoded", 9, ["data.frames_decoded=9", "data.frames_per_clip=6"]),
        ("dino.cls_layer", 3, ["dino.cls_layer=3", "dino.depth=3"]),
        ("dynamics.mask_mode", "sometimes", ["dynamics.mask_mode='sometimes'"]),
    ],
)
def test_mismatches_name_their_fields(config, field, value, names):
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(UserError) as error:
    config_validation.resolve(config)
  assert "\n" not in str(error.value)
  for name in names:
    assert name in str(error.value)


def test_paper_config_without_weights_names_what_is_missing(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(UserError) as error:
    config_validation.resolve(fashion.get_config())
  message = str(error.value)
  for field in ("generator.checkpoint", "clip.checkpoint", "dino.checkpoint", "data.dataset_dir"):
    assert field in message
  assert "python -m port_weights" in message


def test_demo_config_is_valid():
  from configs import demo

  config_validation.resolve(demo.get_config())
