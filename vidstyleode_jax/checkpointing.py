"""Orbax checkpoints of the train state: save every N steps, keep the last K, resume from the latest.

Orbax writes each step into a temporary directory and renames it when complete, so a killed run never leaves a
checkpoint that looks finished but is not. In a multi-process run every process calls save and restore together.
"""

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:

  def __init__(self, workdir, keep):
    self.manager = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
    )

  def latest_step(self):
    return self.manager.latest_step()

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
