"""Loading the folders written by `python -m port_weights KIND SRC DST` (see port_weights/output.py).

A folder holds variables.msgpack (the flax variable collections), architecture.json ({"kind", "module", "fields",
...}) and source.sha256. No torch here: training and inference load the frozen networks with numpy and flax only.
"""

import importlib
import json
import os
from typing import Mapping, Sequence

import flax.linen as nn
import flax.serialization
import flax.traverse_util
import numpy as np

from vidstyleode_jax.errors import UserError

VARIABLES_FILE = "variables.msgpack"
ARCHITECTURE_FILE = "architecture.json"
SOURCE_HASH_FILE = "source.sha256"


def _check_folder(path: str, kind: str | None) -> None:
  if not os.path.isdir(path):
    raise UserError(f"{path}: no such ported-weights folder; create it with `python -m port_weights "
                    f"{kind or 'KIND'} SRC {path}`")


def read_architecture(path: str, kind: str | None = None) -> dict:
  """The architecture.json of a ported-weights folder (no weights are read); see `load` for the arguments."""
  _check_folder(path, kind)
  file = os.path.join(path, ARCHITECTURE_FILE)
  if not os.path.isfile(file):
    raise UserError(f"{file}: missing; {path} is not a complete ported-weights folder")
  try:
    with open(file) as f:
      architecture = json.load(f)
  except json.JSONDecodeError as error:
    raise UserError(f"{file}: not valid JSON ({error})") from None
  if not isinstance(architecture, dict) or not isinstance(architecture.get("fields"), dict):
    raise UserError(f"{file}: expected a JSON object with a \"fields\" object")
  if kind is not None and architecture.get("kind") != kind:
    raise UserError(f"{path}: holds ported weights of kind {architecture.get('kind')!r}, expected {kind!r}")
  return architecture


def load(path: str, kind: str | None = None) -> tuple[dict, dict]:
  """Reads a ported-weights folder.

  Args:
    path: the folder written by `python -m port_weights`.
    kind: if given, the kind the folder must hold (e.g. "stylegan2"), checked against architecture.json.

  Returns:
    (architecture, variables): the JSON dict, and the variable collections as nested dicts of float32 numpy arrays,
    e.g. {"params": {...}, "noise": {...}}.

  Raises:
    UserError: naming the folder or file that is missing or unreadable, or both kinds on a mismatch.
  """
  _check_folder(path, kind)
  file = os.path.join(path, VARIABLES_FILE)
  if not os.path.isfile(file):
    raise UserError(f"{file}: missing; {path} is not a complete ported-weights folder")
  architecture = read_architecture(path, kind)
  with open(file, "rb") as f:
    data = f.read()
  try:
    variables = flax.serialization.msgpack_restore(data)
  except Exception as error:  # msgpack raises several unrelated types on corrupt input
    raise UserError(f"{file}: unreadable ({type(error).__name__}: {error})") from None
  return architecture, variables


def build_module(architecture: dict) -> nn.Module:
  """Instantiates the Flax module named by architecture["module"] (inside vidstyleode_jax) with its "fields"."""
  module_path, _, name = architecture["module"].rpartition(".")
  if not module_path.startswith("vidstyleode_jax."):
    raise UserError(f"refusing to build {architecture['module']!r}: not a vidstyleode_jax module")
  return getattr(importlib.import_module(module_path), name)(**architecture["fields"])


def variable_problems(
    found: dict,
    expected: dict,
    sources: Mapping[tuple, tuple] | None = None,
    unexpected_keys: Sequence[str] = (),
) -> list[str]:
  """Compares converted variables with the module's own, key by key and shape by shape.

  Args:
    found: nested dicts of converted arrays.
    expected: nested dicts of arrays or `jax.ShapeDtypeStruct`s, e.g. `jax.eval_shape(module.init, ...)`.
    sources: optional path tuple of a `found` leaf -> (source key, source shape) or (source key, source shape,
      stored_shape_of), where stored_shape_of maps a module shape to the shape the source would store for it; with
      it a mismatch is told in the source's layout.
    unexpected_keys: source keys that were not converted at all (matched no rule), reported as unexpected.

  Returns:
    The problems, each naming keys and shapes: one per mismatched shape, then one for all unexpected and one for
    all missing keys; empty when everything fits.
  """
  sources = sources or {}
  found_flat = flax.traverse_util.flatten_dict(found)
  expected_flat = flax.traverse_util.flatten_dict(expected)
  describe = lambda path: "/".join(path) + (f" (source key {sources[path][0]!r})" if path in sources else "")
  problems = []
  for path, leaf in found_flat.items():
    if path not in expected_flat:
      continue
    want, got = tuple(expected_flat[path].shape), tuple(np.shape(leaf))
    if want == got:
      continue
    if len(sources.get(path, ())) == 3:
      key, source_shape, stored_shape_of = sources[path]
      problems.append(f"shape mismatch: key {key!r}: expected shape {tuple(stored_shape_of(want))}, found "
                      f"{tuple(source_shape)} (parameter {'/'.join(path)})")
    else:
      origin = f" from source shape {list(sources[path][1])}" if path in sources else ""
      problems.append(f"shape mismatch: {describe(path)} has shape {list(got)}{origin}, expected {list(want)}")
  unexpected = [f"{key!r}" for key in unexpected_keys]
  unexpected += [describe(path) for path in found_flat if path not in expected_flat]
  if unexpected:
    problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected))
  missing = [f"{'/'.join(path)} {list(leaf.shape)}" for path, leaf in expected_flat.items() if path not in found_flat]
  if missing:
    problems.append(f"{len(missing)} missing key(s): " + ", ".join(missing))
  return problems
