"""Checkpoints written before the trainable blocks were stored stacked are read into the stacked layout."""

import jax
import numpy as np

from tests.conftest import tiny_config
from vidstyleode_jax import checkpointing
from vidstyleode_jax import config_validation
from vidstyleode_jax import inference
from vidstyleode_jax.apps import trained_run
from vidstyleode_jax.models import block_scan


def per_block_layout(state):
  """The state as nested dicts with every `<prefix>_stack` [n, ...] split into `<prefix>_0` ... `<prefix>_{n-1}`, as
  checkpoints before the stacked layout held it."""
  tree = {}
  for path, leaf in checkpointing.named_leaves(state).items():
    stacked = [j for j, name in enumerate(path) if name.endswith(block_scan.STACK_SUFFIX)]
    blocks = {path: leaf} if not stacked else {
        path[:stacked[0]] + (path[stacked[0]][:-len(block_scan.STACK_SUFFIX)] + f"_{i}",) + path[stacked[0] + 1:]:
        leaf[i] for i in range(leaf.shape[0])}
    for block_path, value in blocks.items():
      node = tree
      for name in block_path[:-1]:
        node = node.setdefault(name, {})
      node[block_path[-1]] = np.asarray(value)
  return tree


def test_per_block_checkpoint_restores_into_the_stacked_state(tmp_path):
  config = config_validation.resolve(tiny_config())
  rng = np.random.default_rng(0)
  random = lambda x: rng.normal(size=x.shape).astype(x.dtype) if np.issubdtype(x.dtype, np.floating) else np.full(
      x.shape, 7, x.dtype)
  state = jax.tree.map(lambda x: jax.numpy.asarray(random(x)),
                       trained_run.abstract_train_state(inference.Networks.from_config(config)))
  legacy = per_block_layout(state)
  legacy_paths = set(checkpointing.named_leaves(legacy))
  assert ("params", "params", "modulation", "cross_1_1", "mlp", "fc2", "kernel") in legacy_paths
  assert ("params", "params", "mapper", "group_2_1", "fc", "kernel") in legacy_paths
  assert not any(name.endswith(block_scan.STACK_SUFFIX) for path in legacy_paths for name in path)

  writer = checkpointing.Checkpointer(str(tmp_path), keep=2)
  writer.save(7, legacy)
  writer.wait()
  writer.close()

  reader = checkpointing.Checkpointer(str(tmp_path))
  expected = checkpointing.named_leaves(state)
  assert reader.saved_shapes(expected_paths=expected) == {path: leaf.shape for path, leaf in expected.items()}
  restored = checkpointing.named_leaves(reader.restore(state))
  reader.close()
  assert restored.keys() == expected.keys()
  for path, leaf in expected.items():
    np.testing.assert_array_equal(np.asarray(restored[path]), leaf, err_msg="/".join(path))
