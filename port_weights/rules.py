"""Rule tables that map the keys of a PyTorch state dict onto Flax variable paths (kinds stylegan2 and psp).

A rule is `(pattern, path_of, convert)`. A key that fully matches `pattern` (the first matching rule wins) is stored
at `path_of(match)` = (collection, *module path, leaf name) as `convert(array)`, or as stored when `convert` is None.
A `path_of` that returns None drops the key, once `convert` (if any) has checked it: it raises ValueError to refuse.
"""

import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from port_weights import output

Rule = tuple[str, Callable[[re.Match], tuple | None], Callable[[np.ndarray], Any] | None]


def map_keys(state_dict: Mapping[str, Any], rules: Sequence[Rule], collections: Sequence[str],
             key_prefix: str = "") -> tuple[dict, dict, list[str]]:
  """Maps every key of `state_dict` through the first rule whose pattern it matches, keeping the key of each leaf.

  Args:
    state_dict: key -> torch tensor or numpy array (read as float32).
    rules: see the module docstring.
    collections: the variable collections that rules may name, e.g. ("params", "noise").
    key_prefix: what precedes the keys in the file (e.g. "encoder."), added to the keys this function reports.

  Returns:
    trees: {collection: nested dicts of float32 numpy arrays}.
    sources: (collection, *path) of every leaf -> (its key in the file, its stored shape), for error messages.
    unknown: the keys in the file that match no rule, in state-dict order.

  Raises:
    ValueError: naming the key in the file and its shape, when `convert` refuses the array.
  """
  trees = {collection: {} for collection in collections}
  sources, unknown = {}, []
  for key, value in state_dict.items():
    array = output.to_float32(value)
    for pattern, path_of, convert in rules:
      match = re.fullmatch(pattern, key)
      if match is None:
        continue
      try:
        converted = convert(array) if convert is not None else array
      except ValueError as error:
        raise ValueError(f"key {key_prefix + key!r} of shape {list(array.shape)}: {error}") from None
      path = path_of(match)
      if path is not None:
        output.insert(trees[path[0]], path[1:], converted)
        sources[tuple(path)] = (key_prefix + key, tuple(array.shape))
      break
    else:
      unknown.append(key_prefix + key)
  return trees, sources, unknown
