"""Orbax checkpoints of the train state: save every N steps, keep the last K, resume from the newest readable one.

Orbax writes each step into a temporary directory (STEP.orbax-checkpoint-tmp*) and renames it when complete, so a
killed run never leaves a checkpoint that looks finished but is not; a training run's Checkpointer deletes the
temporary directories that killed runs left. Saves run in the background; their errors surface at the next save or
at wait(). A checkpoint that exists but cannot be restored (a truncated or missing file) makes the resume warn,
set it aside in WORKDIR/unreadable_checkpoints/ and take the one before it; when none can be restored, the resume
stops with a UserError rather than start again from step 0. A full disk or quota while saving is a UserError naming
the step's directory. In a multi-process run every process calls save and restore together.
Checkpoints written before the trainable blocks were stored stacked (`<prefix>_0`, `<prefix>_1`, ... instead of
`<prefix>_stack`, models/block_scan.py) are read into the stacked layout.
The run's config is kept next to the checkpoints (WORKDIR/config.json) so that its model can be rebuilt exactly.
"""

import contextlib
import json
import logging as python_logging
import os
import shutil
import uuid

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from vidstyleode_jax import errors
from vidstyleode_jax import files
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import block_scan

UNFINISHED = ".orbax-checkpoint-tmp"  # in the name of a step directory orbax has not finished writing


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


@contextlib.contextmanager
def _absl_warnings_off():
  """Silences absl warnings: orbax warns that a read-only manager saves nothing, which a reader knows (the apps'
  stderr would carry those lines above their one-line errors)."""
  logger = logging.get_absl_logger()
  level = logger.level
  logger.setLevel(python_logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def _key_name(key):
  """A pytree key (dict key, sequence index or dataclass field) as a string, as orbax names it in a checkpoint."""
  return str(next((getattr(key, kind) for kind in ("key", "idx", "name") if hasattr(key, kind)), key))


def named_leaves(tree, is_leaf=None):
  """{path as a tuple of strings, as in a checkpoint (('params', 'params', 'mapper', ...)): leaf} of a pytree."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return {tuple(map(_key_name, path)): leaf for path, leaf in leaves}


def gather_blocks(saved, expected_paths, stack):
  """{path: value} of a checkpoint, with blocks saved one by one under `<prefix>_0`, `<prefix>_1`, ... gathered with
  `stack` (a list of the blocks' values -> one value) under the `<prefix>_stack` of `expected_paths`.

  Paths that `expected_paths` do not name stacked are left as they are, so a checkpoint of another model still
  fails the shape checks, not here.
  """
  result = dict(saved)
  for path in expected_paths:
    stacked = [j for j, name in enumerate(path) if name.endswith(block_scan.STACK_SUFFIX)]
    if path in saved or not stacked:
      continue
    j = stacked[0]
    prefix = path[j][:-len(block_scan.STACK_SUFFIX)]
    block_path = lambda i: path[:j] + (f"{prefix}_{i}",) + path[j + 1:]
    count = next(i for i in range(len(saved) + 1) if block_path(i) not in saved)
    if count:
      result[path] = stack([result.pop(block_path(i)) for i in range(count)])
  return result


def _stacked_shape(block_shapes):
  return (len(block_shapes),) + block_shapes[0]


class Checkpointer:
  """The checkpoints of WORKDIR/checkpoints/.

  Args:
    workdir: the run's directory.
    keep: how many checkpoints a training run keeps; None opens them read-only (the applications), which leaves
      the temporary directories of a run in progress alone.
  """

  def __init__(self, workdir, keep=None):
    self.workdir = workdir
    self.directory = os.path.join(os.path.abspath(workdir), files.CHECKPOINTS_DIR)
    with _absl_warnings_off() if keep is None else contextlib.nullcontext():  # orbax: "read_only=True, ..."
      self.manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=keep is not None, read_only=keep is None,
                                               cleanup_tmp_directories=keep is not None),
          item_handlers=ocp.StandardCheckpointHandler(),
      )

  def latest_step(self):
    return self.manager.latest_step()

  def saved_shapes(self, step=None, expected_paths=()):
    """{path tuple: shape} of every array saved at `step` (default: the latest), read from the metadata only; blocks
    saved one by one are reported stacked where `expected_paths` stack them (see gather_blocks)."""
    step = self.latest_step() if step is None else step
    metadata = named_leaves(self.manager.item_metadata(step), is_leaf=lambda x: hasattr(x, "shape"))
    shapes = {path: tuple(leaf.shape) for path, leaf in metadata.items()}
    return gather_blocks(shapes, expected_paths, _stacked_shape)

  def save(self, step, state):
    """Starts saving `state` as `step` in the background (a full disk raises here or at the next save / wait)."""
    with self._naming_write_failures():
      self.manager.save(step, args=ocp.args.StandardSave(state))

  def restore(self, state_like, step=None):
    """Restores `step` (default: the latest) into arrays shaped and sharded like `state_like`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    expected = named_leaves(abstract)
    saved_shapes = self.saved_shapes(step)
    if set(expected) <= set(saved_shapes) or not set(expected) <= set(
        gather_blocks(saved_shapes, expected, _stacked_shape)):
      return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    saved = named_leaves(self.manager.restore(step, args=ocp.args.StandardRestore()))
    values = gather_blocks(saved, expected, np.stack)
    leaves = [jax.device_put(np.asarray(values[path]).astype(leaf.dtype), leaf.sharding)
              for path, leaf in expected.items()]
    return jax.tree.unflatten(jax.tree.structure(abstract), leaves)

  def restore_newest_readable(self, state_like):
    """Restores the newest checkpoint that every process can read; None if there is no checkpoint at all.

    Newer checkpoints that cannot be restored are logged and set aside (WORKDIR/unreadable_checkpoints/STEP-*).
    Raises UserError, setting nothing aside, when checkpoints exist but none can be restored.
    """
    failures = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state, problem = self.restore(state_like, step), None
      except Exception as error:  # orbax and tensorstore raise many types for a damaged file
        state, problem = None, error
      if np.all(multihost_utils.process_allgather(np.int32(problem is None))):
        for unreadable, _ in failures:
          self._set_aside(unreadable)
        return state
      failures.append((step, problem or "another process could not read it"))
      logging.warning("Checkpoint %d in %s cannot be restored (%s); trying the one before it", step, self.directory,
                      _summary(problem))
    if failures:
      raise UserError(
          f"none of the checkpoints in {self.directory} can be restored (newest first: "
          + "; ".join(f"step {step}: {_summary(problem)}" for step, problem in failures)
          + "); move the folder away to start again from step 0")
    return None

  def wait(self):
    """Waits for the background save to finish; raises its error (a full disk: a UserError)."""
    with self._naming_write_failures():
      self.manager.wait_until_finished()

  def close(self):
    with self._naming_write_failures():
      self.manager.close()

  def _set_aside(self, step):
    """Moves the checkpoint of `step` to WORKDIR/unreadable_checkpoints/ (process 0; the others wait for it)."""
    if jax.process_index() == 0:
      folder = os.path.join(self.workdir, files.UNREADABLE_CHECKPOINTS_DIR)
      os.makedirs(folder, exist_ok=True)
      target = os.path.join(folder, f"{step}-{uuid.uuid4().hex[:8]}")
      os.rename(os.path.join(self.directory, str(step)), target)
      logging.warning("Moved the unreadable checkpoint %d to %s", step, target)
    multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
    self.manager.reload()

  @contextlib.contextmanager
  def _naming_write_failures(self):
    """A full disk while saving: removes the unfinished step directories and raises files.write_failure's UserError."""
    try:
      with files.naming_write_failures(self.directory, outcome="the unfinished checkpoint was removed, the earlier "
                                       "ones are complete"):
        yield
    except UserError:
      with contextlib.suppress(Exception):
        self.manager.close()  # lets orbax's background threads end before their folder goes
      if jax.process_index() == 0:
        for name in os.listdir(self.directory):
          if UNFINISHED in name:
            shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
      raise


def _summary(error):
  """The first 300 characters of an error's message, on one line."""
  return errors.one_line(error)[:300]
