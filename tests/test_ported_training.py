"""Training loads ported frozen networks by path (config.<network>.checkpoint) and rejects mismatching ones."""

import jax
import numpy as np
import pytest
import torch

from port_weights.__main__ import main
from tests.reference import rosinality_stylegan2
from vidstyleode_jax import ported
from vidstyleode_jax import train
from vidstyleode_jax.errors import UserError


def port_demo_sized_generator(config, tmp_path, n_mlp):
  """A rosinality .pt with the demo generator's sizes, ported with the CLI; returns the ported folder."""
  g = config.generator
  torch.manual_seed(0)
  generator = rosinality_stylegan2.Generator(g.resolution, style_dim=g.style_dim, n_mlp=n_mlp,
                                             channel_divisor=g.channel_divisor)
  torch.save({"g_ema": generator.state_dict()}, tmp_path / "g.pt")
  assert main(["stylegan2", str(tmp_path / "g.pt"), str(tmp_path / "ported_g")]) == 0
  return str(tmp_path / "ported_g")


def test_training_uses_the_ported_generator(config, tmp_path):
  config.generator.checkpoint = port_demo_sized_generator(config, tmp_path, n_mlp=config.generator.n_mlp)
  exp = train.setup(config, str(tmp_path / "run"))
  _, expected = ported.load(config.generator.checkpoint)
  loaded = exp.frozen_vars["generator"]
  assert set(loaded) == {"params", "noise"}
  for collection in loaded:
    assert jax.tree.structure(loaded[collection]) == jax.tree.structure(expected[collection])
    for a, b in zip(jax.tree.leaves(expected[collection]), jax.tree.leaves(loaded[collection])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_generator_ported_with_other_sizes_is_rejected(config, tmp_path):
  config.generator.checkpoint = port_demo_sized_generator(config, tmp_path, n_mlp=config.generator.n_mlp + 1)
  with pytest.raises(UserError, match=r"generator.n_mlp=2 in the config, but .*architecture.json has n_mlp=3"):
    train.setup(config, str(tmp_path / "run"))
