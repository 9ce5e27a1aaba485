"""bench --random_weights: a paper config runs without its weights, built with the published architectures."""

import pytest

from vidstyleode_jax import bench
from vidstyleode_jax import config_files
from vidstyleode_jax.errors import UserError


def test_fashion_and_its_ablations_get_the_published_architectures():
  for config_path in ("configs/fashion.py", "configs/ablations.py:fashion/lstm"):
    config = bench.with_random_weights(config_files.load(config_path))
    published = bench.PUBLISHED_ARCHITECTURES
    for name, folder in (("generator", "stylegan_human_v2_1024"), ("clip", "clip_vit_b32"), ("dino", "dino_vitb16")):
      for field, value in published[folder]["fields"].items():
        assert config[name][field] == value, (config_path, name, field)
      assert config[name].checkpoint == ""
    assert config.data.kind == "synthetic" and config.clip.tokenizer == ""


def test_an_unpublished_checkpoint_is_named():
  config = config_files.load("configs/ablations.py:fashion/vgg_no_consistency")
  with pytest.raises(UserError, match=r"vgg.checkpoint=ported/vgg16 is not one of the published checkpoints"):
    bench.with_random_weights(config)
