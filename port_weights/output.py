"""The ported-weights folder: what every `port_weights` kind returns and how it is written atomically.

A folder DST holds
  variables.msgpack   flax.serialization msgpack of the variable collections, float32 numpy arrays;
  architecture.json   {"kind", "module", "fields", ...}: how to rebuild the Flax module;
  source.sha256       "<hex digest>  <source file name>" of the ported file (or folder);
  any extra files     e.g. a tokenizer's vocab.json / merges.txt.
It is read back by `vidstyleode_jax.ported.load`.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, Sequence

import flax.serialization
import numpy as np

from vidstyleode_jax import files
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.ported import ARCHITECTURE_FILE, SOURCE_HASH_FILE, VARIABLES_FILE, variable_problems

RESERVED_FILES = (VARIABLES_FILE, ARCHITECTURE_FILE, SOURCE_HASH_FILE)


@dataclasses.dataclass
class Ported:
  """The result of porting one source checkpoint.

  Attributes:
    variables: flax variable collections of our module, nested dicts of numpy float32 arrays,
      e.g. {"params": {...}, "noise": {...}}.
    architecture: JSON-able {"kind": ..., "module": "<python path of the Flax module or factory>",
      "fields": {...constructor fields...}} plus anything useful (source entry, counts).
    extra_files: file name -> bytes written next to the variables.
  """
  variables: dict
  architecture: dict
  extra_files: dict = dataclasses.field(default_factory=dict)


def source_sha256(src: str) -> str:
  """Hex sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
  digest = hashlib.sha256()
  if os.path.isdir(src):
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(src) for name in names)
  else:
    paths = [src]
  for path in paths:
    if os.path.isdir(src):
      digest.update(os.path.relpath(path, src).encode() + b"\0")
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
  return digest.hexdigest()


def check_variables(
    found: dict,
    expected: dict,
    src: str,
    sources: Mapping[tuple, tuple] | None = None,
    unexpected_keys: Sequence[str] = (),
) -> None:
  """`variable_problems`, raised as one UserError that starts with the source file `src`.

  Raises:
    UserError: naming the file, then the offending keys and shapes: mismatched, unexpected and missing keys.
  """
  problems = variable_problems(found, expected, sources, unexpected_keys)
  if problems:
    raise UserError(f"{src}: " + "; ".join(problems))


def to_float32(value: Any) -> np.ndarray:
  """A torch tensor (float16 included) or array -> float32 numpy array."""
  if hasattr(value, "detach"):
    value = value.detach().cpu().float().numpy()
  return np.asarray(value, dtype=np.float32)


def _as_float32(tree):
  if isinstance(tree, dict):
    return {key: _as_float32(value) for key, value in tree.items()}
  return np.asarray(tree, dtype=np.float32)


def write(ported: Ported, src: str, dst: str) -> None:
  """Writes `ported` as the folder `dst`, atomically: a temp folder next to it is filled, then renamed.

  Raises:
    UserError: if `dst` already exists, or an extra file name clashes with a reserved one.
  """
  clashes = sorted(set(ported.extra_files) & set(RESERVED_FILES))
  if clashes:
    raise UserError(f"{src}: extra files {clashes} clash with the reserved names {list(RESERVED_FILES)}")
  contents = {
      VARIABLES_FILE: flax.serialization.msgpack_serialize(_as_float32(ported.variables)),
      ARCHITECTURE_FILE: (json.dumps(ported.architecture, indent=2, sort_keys=True) + "\n").encode(),
      SOURCE_HASH_FILE: f"{source_sha256(src)}  {os.path.basename(os.path.normpath(src))}\n".encode(),
      **ported.extra_files,
  }
  with files.atomic_folder(dst) as staging:
    for name, data in contents.items():
      path = os.path.join(staging, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(data)


def insert(tree: dict, path, value) -> None:
  """tree[path[0]]...[path[-1]] = value, creating the nested dicts on the way."""
  for part in path[:-1]:
    tree = tree.setdefault(part, {})
  tree[path[-1]] = value
