"""rosinality StyleGAN2 state dict (`g_ema`, docs/weight_formats.md §1.3) -> variables of vidstyleode_jax Generator.

Every key is consumed: weights go to the "params" tree, `noises.noise_k` to the "noise" tree, and the stored
blur / up-sampling FIR buffers are checked against the recomputed kernel (tolerance 0). An unknown key raises.
The result is not checked for completeness here: `port_weights.stylegan2` compares its shapes with `jax.eval_shape`
of the Generator's init for the configuration it infers from the keys.
"""

import re
from typing import Any, Mapping

import numpy as np

from port_weights import rules
from vidstyleode_jax.models.stylegan2 import BLUR_KERNEL

_LAYER = r"(conv1|convs\.\d+|to_rgb1|to_rgbs\.\d+)"


def _nchw_to_nhwc(array: np.ndarray) -> np.ndarray:
  if array.ndim != 4:
    raise ValueError("expected [1, channels, height, width]")
  return array.transpose(0, 2, 3, 1)


def _modulated_kernel(array: np.ndarray) -> np.ndarray:
  """[1, out, in, k, k] -> HWIO [k, k, in, out]."""
  if array.ndim != 5 or array.shape[0] != 1:
    raise ValueError("expected [1, out, in, k, k]")
  return array[0].transpose(2, 3, 1, 0)


def _check_blur(array: np.ndarray) -> None:
  if not np.array_equal(array, BLUR_KERNEL):
    raise ValueError(f"stored FIR kernel {array.tolist()} differs from outer([1,3,3,1])/16: {BLUR_KERNEL.tolist()}")


def _layer(match: re.Match) -> str:
  """A layer name of the match's first group, e.g. "convs.3" -> "convs_3"."""
  return match[1].replace(".", "_")


# (key pattern, match -> (collection, *path) or None for a checked buffer, conversion); see port_weights/rules.py.
_RULES = (
    (r"style\.(\d+)\.weight", lambda m: ("params", f"style_{m[1]}", "kernel"), np.transpose),
    (r"style\.(\d+)\.bias", lambda m: ("params", f"style_{m[1]}", "bias"), None),
    (r"input\.input", lambda m: ("params", "input"), _nchw_to_nhwc),
    (_LAYER + r"\.conv\.weight", lambda m: ("params", _layer(m), "conv", "kernel"), _modulated_kernel),
    (_LAYER + r"\.conv\.modulation\.weight", lambda m: ("params", _layer(m), "conv", "modulation", "kernel"),
     np.transpose),
    (_LAYER + r"\.conv\.modulation\.bias", lambda m: ("params", _layer(m), "conv", "modulation", "bias"), None),
    (_LAYER + r"\.noise\.weight", lambda m: ("params", _layer(m), "noise", "weight"), None),
    (_LAYER + r"\.activate\.bias", lambda m: ("params", _layer(m), "activate", "bias"), None),
    (r"(to_rgb1|to_rgbs\.\d+)\.bias", lambda m: ("params", _layer(m), "bias"), lambda a: a.reshape(3)),
    (_LAYER + r"\.(conv\.blur|upsample)\.kernel", lambda m: None, _check_blur),
    (r"noises\.(noise_\d+)", lambda m: ("noise", m[1]), _nchw_to_nhwc),
)


def map_generator(state_dict: Mapping[str, Any]) -> tuple[dict, dict, list[str]]:
  """Maps a rosinality generator state dict onto the Flax Generator's variable trees, keeping the key of each leaf.

  Args:
    state_dict: rosinality key -> tensor (torch tensor or numpy array), e.g. `torch.load(f)["g_ema"]`.

  Returns:
    trees: {"params": ..., "noise": ...}, nested dicts of float32 numpy arrays.
    sources: (collection, *path) of every leaf -> (rosinality key, its shape), for error messages.
    unknown: the keys that match no rule, in state-dict order.

  Raises:
    ValueError: naming the key and its shape, when an array cannot be converted (wrong rank) or a stored FIR
      kernel differs from the recomputed one.
  """
  return rules.map_keys(state_dict, _RULES, ("params", "noise"))


def convert_generator(state_dict: Mapping[str, Any]) -> tuple[dict, dict]:
  """Maps a rosinality generator state dict onto the Flax Generator's variable trees.

  Args:
    state_dict: rosinality key -> tensor (torch tensor or numpy array), e.g. `torch.load(f)["g_ema"]`.

  Returns:
    (params, noise): nested dicts of float32 numpy arrays, for `{"params": params, "noise": noise}`.

  Raises:
    ValueError: on a key that matches no rule, an array of the wrong rank, or a stored FIR kernel that differs
      from the recomputed one.
  """
  trees, _, unknown = map_generator(state_dict)
  if unknown:
    raise ValueError(f"unknown keys in the rosinality generator state dict: {unknown}")
  return trees["params"], trees["noise"]
