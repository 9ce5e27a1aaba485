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
import shutil
import tempfile
from typing import Any, Mapping, Sequence

import flax.serialization
import flax.traverse_util
import numpy as np

from vidstyleode_jax.ported import ARCHITECTURE_FILE, VARIABLES_FILE

SOURCE_HASH_FILE = "source.sha256"
RESERVED_FILES = (VARIABLES_FILE, ARCHITECTURE_FILE, SOURCE_HASH_FILE)


class PortError(Exception):
  """Bad input: the message names the file and the first offending key and shape (or what was expected)."""


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


def check_variables(
    found: dict,
    expected: dict,
    src: str,
    sources: Mapping[tuple, tuple] | None = None,
    unexpected_keys: Sequence[str] = (),
) -> None:
  """`variable_problems`, raised as one PortError that starts with the source file `src`.

  Raises:
    PortError: naming the file, then the offending keys and shapes: mismatched, unexpected and missing keys.
  """
  problems = variable_problems(found, expected, sources, unexpected_keys)
  if problems:
    raise PortError(f"{src}: " + "; ".join(problems))


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
    PortError: if `dst` already exists, or an extra file name clashes with a reserved one.
  """
  dst = os.path.abspath(dst)
  if os.path.exists(dst):
    raise PortError(f"{dst}: destination already exists; remove it or choose another DST")
  clashes = sorted(set(ported.extra_files) & set(RESERVED_FILES))
  if clashes:
    raise PortError(f"{src}: extra files {clashes} clash with the reserved names {list(RESERVED_FILES)}")
  parent = os.path.dirname(dst)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.partial-", dir=parent)
  try:
    os.chmod(staging, 0o755)  # mkdtemp makes it private
    with open(os.path.join(staging, VARIABLES_FILE), "wb") as f:
      f.write(flax.serialization.msgpack_serialize(_as_float32(ported.variables)))
    with open(os.path.join(staging, ARCHITECTURE_FILE), "w") as f:
      json.dump(ported.architecture, f, indent=2, sort_keys=True)
      f.write("\n")
    with open(os.path.join(staging, SOURCE_HASH_FILE), "w") as f:
      f.write(f"{source_sha256(src)}  {os.path.basename(os.path.normpath(src))}\n")
    for name, data in ported.extra_files.items():
      path = os.path.join(staging, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(data)
    os.rename(staging, dst)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def insert(tree: dict, path, value) -> None:
  """tree[path[0]]...[path[-1]] = value, creating the nested dicts on the way."""
  for part in path[:-1]:
    tree = tree.setdefault(part, {})
  tree[path[-1]] = value
