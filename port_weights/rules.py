"""Rule tables that map the keys of a state dict onto Flax variable paths (kinds psp, inception, i3d, raft).

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
    sources: (collection, *path) of every leaf -> (its key in the file, its stored shape[, the `stored_shape_of` of
      its conversion: a Flax shape -> the stored shape it needs]), for error messages (output.variable_problems).
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
        stored_shape_of = getattr(convert, "stored_shape_of", None)
        sources[tuple(path)] = (key_prefix + key, tuple(array.shape)) + ((stored_shape_of,) if stored_shape_of else ())
      break
    else:
      unknown.append(key_prefix + key)
  return trees, sources, unknown


# torch BatchNorm2d tensor name -> (collection, leaf name) of Flax's BatchNorm; `num_batches_tracked` is dropped.
BATCH_NORM_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
                     "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
BATCH_NORM_TENSOR = r"\.(?P<tensor>weight|bias|running_mean|running_var)"


def batch_norm_path(module_path: Callable[[re.Match], tuple]) -> Callable[[re.Match], tuple]:
  """Path function of a BatchNorm2d tensor: (collection, *module_path(match), leaf) from the `tensor` group."""
  return lambda m: (BATCH_NORM_LEAVES[m["tensor"]][0], *module_path(m), BATCH_NORM_LEAVES[m["tensor"]][1])


def conv_kernel(array: np.ndarray) -> np.ndarray:
  """torch conv weight OIHW [out, in, kh, kw] -> Flax HWIO [kh, kw, in, out]."""
  if array.ndim != 4:
    raise ValueError("expected a conv weight [out, in, kh, kw]")
  return array.transpose(2, 3, 1, 0)


conv_kernel.stored_shape_of = lambda shape: (shape[3], shape[2], shape[0], shape[1])
