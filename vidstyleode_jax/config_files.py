"""Config files: `configs/*.py` files with a `get_config()`, and the config.json that training writes.

A config file may build on another one next to it (`configs/ravdess.py` starts from `configs/fashion.py`) through
`sibling`, which loads by path: the file works from any working directory, with `--config=/abs/path/ravdess.py`.
"""

import importlib.util
import json
import os

import ml_collections

from vidstyleode_jax.errors import UserError


def _module_from_path(path, name):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def set_fields(config, fields):
  """Sets {"section.key": value} in `config`, in place; a value may change the field's type (a ramp becomes 0)."""
  for field, value in fields.items():
    section, key = field.split(".")
    del config[section][key]
    config[section][key] = value
  return config


def sibling(config_file, name):
  """The config module `name` (e.g. "fashion") in the folder of `config_file` (pass `__file__`)."""
  return _module_from_path(os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py"),
                           f"vidstyleode_config_{name}")


def load(path):
  """A ConfigDict from a configs/*.py file (its get_config()) or a config.json; UserError if it cannot be read.

  As with --config, `FILE.py:ARG` calls get_config(ARG) (e.g. configs/ablations.py:lstm).
  """
  path, _, arg = path.partition(":") if ".py:" in path else (path, "", "")
  if not os.path.isfile(path):
    raise UserError(f"config file not found: {path}")
  if path.endswith(".json"):
    try:
      with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as error:
      raise UserError(f"{path}: not valid JSON ({error})") from None
  module = _module_from_path(path, "vidstyleode_config")
  if not hasattr(module, "get_config"):
    raise UserError(f"config file {path} has no get_config() function")
  if not arg:
    return module.get_config()
  try:
    return module.get_config(arg)
  except ValueError as error:
    raise UserError(str(error)) from None
