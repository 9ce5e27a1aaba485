"""Orbax checkpoints of the train state: save every N steps, keep the last K, resume from the latest.

Orbax writes each step into a temporary directory and renames it when complete, so a killed run never leaves a
checkpoint that looks finished but is not. In a multi-process run every process calls save and restore together.
The run's config is kept next to the checkpoints (WORKDIR/config.json) so that its model can be rebuilt exactly.
"""

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

from vidstyleode_jax import files


def write_config(workdir, config):
  """Writes `config` to WORKDIR/config.json atomically (several processes may write the same file)."""
  files.write_text(os.path.join(workdir, files.CONFIG_FILE), config.to_json_best_effort(indent=2, sort_keys=True))


def read_config(workdir):
  """WORKDIR/config.json as a ConfigDict (JSON lists stay lists), or None if the run has none."""
  path = os.path.join(workdir, files.CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


class Checkpointer:

  def __init__(self, workdir, keep):
    self.manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), files.CHECKPOINTS_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_handlers=ocp.StandardCheckpointHandler(),
    )

  def latest_step(self):
    return self.manager.latest_step()

  def saved_shapes(self, step=None):
    """{path tuple: shape} of every array saved at `step` (default: the latest), read from the metadata only."""
    step = self.latest_step() if step is None else step
    metadata = self.manager.item_metadata(step)
    leaves = jax.tree_util.tree_flatten_with_path(metadata, is_leaf=lambda x: hasattr(x, "shape"))[0]
    name = lambda key: str(getattr(key, "key", getattr(key, "idx", key)))
    return {tuple(name(key) for key in path): tuple(leaf.shape) for path, leaf in leaves}

  def save(self, step, state):
    self.manager.save(step, args=ocp.args.StandardSave(state))

  def restore(self, state_like, step=None):
    """Restores `step` (default: the latest) into arrays shaped and sharded like `state_like`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()
