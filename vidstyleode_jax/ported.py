"""Loading the folders written by `python -m port_weights KIND SRC DST` (see port_weights/output.py).

A folder holds variables.msgpack (the flax variable collections), architecture.json ({"kind", "module", "fields",
...}) and source.sha256. No torch here: training and inference load the frozen networks with numpy and flax only.
"""

import importlib
import json
import os

import flax.linen as nn
import flax.serialization

VARIABLES_FILE = "variables.msgpack"
ARCHITECTURE_FILE = "architecture.json"


class PortedWeightsError(ValueError):
  """A ported-weights folder is missing, incomplete, unreadable or of another kind than asked for."""


def load(path: str, kind: str | None = None) -> tuple[dict, dict]:
  """Reads a ported-weights folder.

  Args:
    path: the folder written by `python -m port_weights`.
    kind: if given, the kind the folder must hold (e.g. "stylegan2"), checked against architecture.json.

  Returns:
    (architecture, variables): the JSON dict, and the variable collections as nested dicts of float32 numpy arrays,
    e.g. {"params": {...}, "noise": {...}}.

  Raises:
    PortedWeightsError: naming the folder or file that is missing or unreadable, or both kinds on a mismatch.
  """
  if not os.path.isdir(path):
    raise PortedWeightsError(f"{path}: no such ported-weights folder; create it with `python -m port_weights "
                             f"{kind or 'KIND'} SRC {path}`")
  files = {name: os.path.join(path, name) for name in (ARCHITECTURE_FILE, VARIABLES_FILE)}
  for file in files.values():
    if not os.path.isfile(file):
      raise PortedWeightsError(f"{file}: missing; {path} is not a complete ported-weights folder")
  try:
    with open(files[ARCHITECTURE_FILE]) as f:
      architecture = json.load(f)
  except json.JSONDecodeError as error:
    raise PortedWeightsError(f"{files[ARCHITECTURE_FILE]}: not valid JSON ({error})") from None
  if kind is not None and architecture.get("kind") != kind:
    raise PortedWeightsError(f"{path}: holds ported weights of kind {architecture.get('kind')!r}, expected {kind!r}")
  with open(files[VARIABLES_FILE], "rb") as f:
    data = f.read()
  try:
    variables = flax.serialization.msgpack_restore(data)
  except Exception as error:  # msgpack raises several unrelated types on corrupt input
    raise PortedWeightsError(f"{files[VARIABLES_FILE]}: unreadable ({type(error).__name__}: {error})") from None
  return architecture, variables


def build_module(architecture: dict) -> nn.Module:
  """Instantiates the Flax module named by architecture["module"] (inside vidstyleode_jax) with its "fields"."""
  module_path, _, name = architecture["module"].rpartition(".")
  if not module_path.startswith("vidstyleode_jax."):
    raise PortedWeightsError(f"refusing to build {architecture['module']!r}: not a vidstyleode_jax module")
  return getattr(importlib.import_module(module_path), name)(**architecture["fields"])
