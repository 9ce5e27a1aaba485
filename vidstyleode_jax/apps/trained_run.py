"""A trained run, ready for inference: its exact config, its trainable params and its frozen networks.

The config is WORKDIR/config.json, written by training with the frozen networks' architectures resolved; it is
resolved again here, so a ported folder that changed since training is refused, naming the field. `--config` gives
the config of a run that has no config.json. The trainable params are restored from the latest orbax checkpoint
after checking every saved parameter shape against the model that the config builds, so a checkpoint of another
config is refused with the parameter path and both shapes.
"""

import dataclasses
import os

import jax
import numpy as np

from vidstyleode_jax import checkpointing
from vidstyleode_jax import config_files
from vidstyleode_jax import config_validation
from vidstyleode_jax import files
from vidstyleode_jax import inference
from vidstyleode_jax import text
from vidstyleode_jax import train_step
from vidstyleode_jax.data import inputs as data_inputs
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import frozen as frozen_lib


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  nets: inference.Networks
  params: dict
  frozen_vars: dict
  workdir: str
  step: int  # the training step of the restored checkpoint

  @property
  def config(self):
    return self.nets.config

  @property
  def frame_format(self):
    """How input frames become the model's input, as `prepare` made the training data."""
    return data_inputs.FrameFormat.of(self.config)

  def tokenizer(self):
    """The run's CLIP tokenizer, the one training used (text.tokenizer_folder)."""
    return text.load_tokenizer(self.config, self.workdir)


def run_config(workdir, config_path=None):
  """The run's config: WORKDIR/config.json, or `config_path` for a run that has none."""
  saved = checkpointing.read_config(workdir)
  config_json = os.path.join(workdir, files.CONFIG_FILE)
  if saved is not None and config_path is not None:
    raise UserError(f"--config {config_path}: the run has its own config ({config_json}); --config is only for runs "
                    "without one")
  if saved is None and config_path is None:
    raise UserError(f"{config_json} not found: pass the run's config with --config (e.g. --config configs/demo.py)")
  return saved if saved is not None else config_files.load(config_path)


def abstract_train_state(nets):
  """Shapes and dtypes of the train state that train.setup initialises, computed without running anything."""
  config = nets.config
  d = config.data
  frames = d.frames_per_clip
  example = dict(
      frames=np.zeros((1, frames, d.height, d.width, 3), np.uint8),
      wplus=np.zeros((1, frames, nets.frozen.generator.n_latent, nets.frozen.generator.style_dim), np.float32),
      times=(np.arange(frames)[None] / d.video_length).astype(np.float32),
  )
  state = jax.eval_shape(lambda key: train_step.init_state(nets, config, key, example), jax.random.key(config.seed))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def _param_shapes(params):
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {tuple(str(k.key) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def check_param_shapes(expected, saved, checkpoint_dir):
  """expected, saved: {path: shape} of the trainable params; raises UserError naming the first mismatch."""
  for path in sorted(set(expected) | set(saved)):
    name = "/".join(path)
    if path not in saved:
      raise UserError(f"parameter {name} (shape {expected[path]}) is missing from {checkpoint_dir}: a checkpoint from "
                      "another config")
    if path not in expected:
      raise UserError(f"parameter {name} (shape {saved[path]}) in {checkpoint_dir} is not in the model the config "
                      "builds: a checkpoint from another config")
    if saved[path] != expected[path]:
      raise UserError(f"parameter {name} has shape {saved[path]} in {checkpoint_dir} but the config builds "
                      f"{expected[path]}: a checkpoint from another config")


def load(workdir, config_path=None, ode_max_steps=None):
  """Restores the latest checkpoint of the run in `workdir` (params only are kept) and its frozen networks."""
  if not os.path.isdir(workdir):
    raise UserError(f"Workdir not found: {workdir}")
  config = run_config(workdir, config_path)
  if ode_max_steps is not None:
    config.dynamics.max_steps = ode_max_steps
  config = config_validation.resolve(config, need_dataset=False)
  nets = inference.Networks.from_config(config)
  checkpoint_dir = os.path.join(workdir, files.CHECKPOINTS_DIR)
  if not os.path.isdir(checkpoint_dir):
    raise UserError(f"No checkpoints folder in {workdir}")
  checkpointer = checkpointing.Checkpointer(workdir)
  try:
    step = checkpointer.latest_step()
    if step is None:
      raise UserError(f"No checkpoint in {checkpoint_dir}")
    state = abstract_train_state(nets)
    expected = _param_shapes(state.params)
    saved_shapes = checkpointer.saved_shapes(expected_paths=[("params",) + path for path in expected])
    saved = {path[1:]: shape for path, shape in saved_shapes.items() if path[0] == "params"}
    check_param_shapes(expected, saved, checkpoint_dir)
    params = checkpointer.restore(state).params
  finally:
    checkpointer.close()
  frozen_vars = frozen_lib.load_or_init(nets.frozen, config, jax.random.key(config.seed + 1))
  return TrainedRun(nets, params, frozen_vars, workdir, step)
