"""A trained run, ready for inference: its exact config, its trainable params and its frozen networks.

The config comes from WORKDIR/config.json (written by training); `--config` may replace it for runs that have none,
or change settings that do not define the model (ported weight paths, ODE solver tolerances). The trainable params
are restored from the latest orbax checkpoint after checking every saved parameter shape against the model that the
config builds, so a checkpoint of another config is refused with the parameter path and both shapes.
"""

import dataclasses
import importlib.util
import json
import os

import jax
import ml_collections
import numpy as np

from vidstyleode_jax import checkpointing
from vidstyleode_jax import inference
from vidstyleode_jax import text
from vidstyleode_jax import train_step
from vidstyleode_jax.apps.errors import AppError
from vidstyleode_jax.models import frozen as frozen_lib

# Config sections whose fields build the networks, and the fields in them that do not change what a model computes
# from its weights (where weights are read from, memory settings, solver settings of the ODE).
MODEL_SECTIONS = ("generator", "clip", "dino", "dynamics", "modulation", "mapper")
NON_MODEL_FIELDS = {
    "generator": ("checkpoint", "remat"),
    "clip": ("checkpoint", "tokenizer", "remat"),
    "dino": ("checkpoint", "remat"),
    "dynamics": ("rtol", "atol", "max_steps", "mask_mode", "mask_num_hidden"),
}
# Outside those sections: the seed draws the frozen networks of a run without ported weights; the data size and
# video_length fix the input size and the time unit the model was trained with.
OTHER_MODEL_FIELDS = ("seed", "data.height", "data.width", "data.video_length")


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  nets: inference.Networks
  params: dict
  frozen_vars: dict
  workdir: str

  @property
  def config(self):
    return self.nets.config

  def tokenizer(self):
    """The run's CLIP tokenizer: config.clip.tokenizer, or the demo vocabulary that training wrote to the workdir."""
    folder = self.config.clip.tokenizer or os.path.join(self.workdir, "demo_data", "tokenizer")
    if not os.path.isdir(folder):
      raise AppError(f"Tokenizer folder not found: {folder} (config.clip.tokenizer, or WORKDIR/demo_data/tokenizer)")
    return text.ClipTokenizer(folder, self.config.clip.context_length)


def load_config_file(path):
  """A config from a configs/*.py file (its get_config()) or a config.json file."""
  if not os.path.isfile(path):
    raise AppError(f"Config file not found: {path}")
  if path.endswith(".json"):
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  spec = importlib.util.spec_from_file_location("vidstyleode_app_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise AppError(f"Config file {path} has no get_config() function")
  return module.get_config()


def _flat_fields(config):
  """{'section.field': value} of a config, values as JSON gives them back (tuples become lists)."""
  flat = {}

  def visit(prefix, value):
    if isinstance(value, dict):
      for key, item in value.items():
        visit(f"{prefix}.{key}" if prefix else key, item)
    else:
      flat[prefix] = value

  visit("", json.loads(config.to_json_best_effort()))
  return flat


def model_fields(config):
  """The config fields that define the model, dotted names -> values."""
  flat = _flat_fields(config)
  keep = lambda name: (name in OTHER_MODEL_FIELDS or (
      name.split(".")[0] in MODEL_SECTIONS and name.split(".")[-1] not in NON_MODEL_FIELDS.get(name.split(".")[0], ())))
  return {name: value for name, value in flat.items() if keep(name)}


def check_same_model(saved, given, saved_name, given_name):
  """Raises AppError naming the first model field in which the two configs differ."""
  saved_fields, given_fields = model_fields(saved), model_fields(given)
  for name in sorted(set(saved_fields) | set(given_fields)):
    if saved_fields.get(name) != given_fields.get(name):
      raise AppError(
          f"config field {name} is {saved_fields.get(name)!r} in {saved_name} but {given_fields.get(name)!r} in "
          f"{given_name}: a checkpoint from another config cannot be used with this model")


def resolve_config(workdir, config_path=None):
  """The run's config.json, checked against and replaced by --config when one is given."""
  saved = checkpointing.read_config(workdir)
  if config_path is None:
    if saved is None:
      raise AppError(f"{os.path.join(workdir, checkpointing.CONFIG_FILE)} not found: pass the run's config with "
                     "--config (e.g. --config configs/demo.py)")
    return saved
  given = load_config_file(config_path)
  if saved is not None:
    check_same_model(saved, given, os.path.join(workdir, checkpointing.CONFIG_FILE), config_path)
  return given


def abstract_train_state(nets):
  """Shapes and dtypes of the train state that train.setup initialises, computed without running anything."""
  config = nets.config
  d = config.data
  frames = d.frames_per_clip
  example = dict(
      frames=np.zeros((1, frames, d.height, d.width, 3), np.uint8),
      wplus=np.zeros((1, frames, nets.frozen.generator.n_latent, config.generator.style_dim), np.float32),
      times=(np.arange(frames)[None] / d.video_length).astype(np.float32),
  )
  state = jax.eval_shape(lambda key: train_step.init_state(nets, config, key, example), jax.random.key(config.seed))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def _param_shapes(params):
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {tuple(str(k.key) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def check_param_shapes(expected, saved, checkpoint_dir):
  """expected, saved: {path: shape} of the trainable params; raises AppError naming the first mismatch."""
  for path in sorted(set(expected) | set(saved)):
    name = "/".join(path)
    if path not in saved:
      raise AppError(f"parameter {name} (shape {expected[path]}) is missing from {checkpoint_dir}: a checkpoint from "
                     "another config")
    if path not in expected:
      raise AppError(f"parameter {name} (shape {saved[path]}) in {checkpoint_dir} is not in the model the config "
                     "builds: a checkpoint from another config")
    if saved[path] != expected[path]:
      raise AppError(f"parameter {name} has shape {saved[path]} in {checkpoint_dir} but the config builds "
                     f"{expected[path]}: a checkpoint from another config")


def load(workdir, config_path=None, ode_max_steps=None):
  """Restores the latest checkpoint of the run in `workdir` (params only are kept) and its frozen networks."""
  if not os.path.isdir(workdir):
    raise AppError(f"Workdir not found: {workdir}")
  config = resolve_config(workdir, config_path)
  if ode_max_steps is not None:
    config.dynamics.max_steps = ode_max_steps
  nets = inference.Networks.from_config(config)
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(checkpoint_dir):
    raise AppError(f"No checkpoints folder in {workdir}")
  checkpointer = checkpointing.Checkpointer(workdir, keep=1)
  try:
    if checkpointer.latest_step() is None:
      raise AppError(f"No checkpoint in {checkpoint_dir}")
    state = abstract_train_state(nets)
    saved = {path[1:]: shape for path, shape in checkpointer.saved_shapes().items() if path[0] == "params"}
    check_param_shapes(_param_shapes(state.params), saved, checkpoint_dir)
    params = checkpointer.restore(state).params
  finally:
    checkpointer.close()
  frozen_vars = frozen_lib.load_or_init(nets.frozen, config, jax.random.key(config.seed + 1))
  return TrainedRun(nets, params, frozen_vars, workdir)
