"""Kind `stylegan2-ada`: an NVlabs StyleGAN2-ADA / StyleGAN-Human network pickle -> Generator.

The format: docs/weight_formats.md §2.

The pickle is read without NVIDIA code and without executing anything it names (§2.6): a restricted unpickler
admits torch's tensor and storage rebuild functions (storages are re-read with `torch.load(weights_only=True)`),
`collections.OrderedDict`, NumPy dtypes and non-object scalars, torch dtypes, and turns NV persistent objects
into inert records (their `module_src` is never run). Any other global is refused. `G_ema` is flattened to its
state dict, mapped onto rosinality keys (§2.4; the resample filters are checked against outer([1, 3, 3, 1]) / 64 and
dropped) and converted like kind `stylegan2`. `conv_clamp` and the mapping lr multiplier are read from the
layer records (§2.3); `mapping.w_avg` becomes the "latent_avg" collection.
"""

import argparse
import collections
import io
import math
import re
import warnings
from typing import Any

import numpy as np
import torch

from port_weights import pickles, stylegan2
from port_weights.output import Ported
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models.stylegan2 import BLUR_KERNEL

DESCRIPTION = (
    "NVlabs StyleGAN2-ADA / StyleGAN-Human network pickle (.pkl with 'G_ema'), read without NVIDIA code through a "
    "restricted unpickler -> vidstyleode_jax.models.stylegan2.Generator (conv_clamp honoured)."
)
NV_PACKAGES = ("dnnlib", "torch_utils", "training")


class Record:
  """An NV persistent object (`torch_utils.persistence._reconstruct_persistent_obj(meta)`), kept as data."""

  def __init__(self, meta: Any):
    meta = meta if isinstance(meta, dict) else {}
    self.class_name = meta.get("class_name")
    self.state = meta.get("state") if isinstance(meta.get("state"), dict) else {}


class EasyDict(dict):
  """Stands in for `dnnlib.util.EasyDict`."""


class Stub:
  """Stands in for any other class of the NV packages: accepts and keeps its arguments and state, does nothing."""

  def __init__(self, *args, **kwargs):
    self.args, self.kwargs = args, kwargs

  def __setstate__(self, state):
    self.state = state


def _load_storage(data: bytes):
  """`torch.storage._load_from_bytes` with weights_only=True (the original re-enters full pickle)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
  """Parameters are only read: keep the tensor, drop the autograd flags and any extra state."""
  return data


def _numpy_scalar(dtype, data=None):
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise pickles.RefusedGlobal(f"NumPy scalar of dtype {dtype!r} is not allowed")
  return np.frombuffer(data, dtype=dtype)[0]


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): pickles.numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Record,
    ("dnnlib", "EasyDict"): EasyDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
}


def _nv_fallback(module: str, name: str):
  """torch dtypes, and inert stubs for the classes of the NV packages."""
  if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
    return getattr(torch, name)
  if module.split(".")[0] in NV_PACKAGES:
    return Stub
  return None


def read_pickle(src: str) -> Any:
  return pickles.read(src, _ALLOWED, "StyleGAN2-ADA network pickle", _nv_fallback)


def flatten(record: Record, src: str, prefix: str = "") -> tuple[dict, dict]:
  """The record tree as (state dict {key: tensor}, {module prefix: record}), in state_dict() order."""
  tensors, records = {}, {prefix: record}
  state = record.state
  non_persistent = state.get("_non_persistent_buffers_set") or set()
  for name, value in (state.get("_parameters") or {}).items():
    if value is not None:
      tensors[prefix + name] = value
  for name, value in (state.get("_buffers") or {}).items():
    if value is not None and name not in non_persistent:
      tensors[prefix + name] = value
  for name, child in (state.get("_modules") or {}).items():
    if child is None:
      continue
    if not isinstance(child, Record):
      raise UserError(f"{src}: module {prefix + name!r} is a {type(child).__name__}, not an NV persistent object")
    child_tensors, child_records = flatten(child, src, prefix + name + ".")
    tensors.update(child_tensors)
    records.update(child_records)
  return tensors, records


def _rosinality_layer(resolution: int, layer: str) -> tuple[str, int] | None:
  """(rosinality layer name, noise index) of NV `synthesis.b{resolution}.{layer}`; None if there is none."""
  if resolution < 4 or resolution & (resolution - 1):
    return None
  if resolution == 4:
    return {"conv1": ("conv1", 0), "torgb": ("to_rgb1", -1)}.get(layer)
  j = int(math.log2(resolution)) - 3
  return {"conv0": (f"convs.{2 * j}", 2 * j + 1), "conv1": (f"convs.{2 * j + 1}", 2 * j + 2),
          "torgb": (f"to_rgbs.{j}", -1)}.get(layer)


_FIELDS = {  # NV field of a SynthesisLayer / ToRGBLayer -> rosinality suffix and array conversion
    "weight": (".conv.weight", lambda a: a[None]),
    "affine.weight": (".conv.modulation.weight", None),
    "affine.bias": (".conv.modulation.bias", None),
    "noise_strength": (".noise.weight", lambda a: a.reshape(-1) if a.ndim == 0 else a),
}


def to_rosinality(tensors: dict, src: str) -> tuple[dict, dict, list[str], np.ndarray | None]:
  """Maps NV `G_ema` keys (values: torch tensors or numpy arrays) onto rosinality keys (docs/weight_formats.md §2.4).

  Keys of other NV variants (c_dim > 0 embeddings, the 'resnet' skip convs) match nothing and are returned as
  unmapped, to be reported as unexpected.

  Returns:
    (rosinality state dict, rosinality key -> (NV key, NV shape), unmapped NV keys, w_avg or None).

  Raises:
    UserError: naming a resample filter that differs from outer([1, 3, 3, 1]) / 64.
  """
  mapped, source_of, unknown, w_avg = {}, {}, [], None
  for key, value in tensors.items():
    if isinstance(value, torch.Tensor):
      value = value.detach().float().numpy()
    if not isinstance(value, np.ndarray):
      raise UserError(f"{src}: key {key!r} holds a {type(value).__name__}, not a tensor")
    array = value.astype(np.float32, copy=False)
    target, convert = None, None
    if key.endswith("resample_filter"):
      if not np.array_equal(array * 4, BLUR_KERNEL):
        raise UserError(f"{src}: key {key!r} of shape {list(array.shape)} differs from outer([1, 3, 3, 1]) / 64")
      continue
    if key == "mapping.w_avg":
      w_avg = array
      continue
    if match := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", key):
      target = f"style.{int(match[1]) + 1}.{match[2]}"
    elif key == "synthesis.b4.const":
      target, convert = "input.input", lambda a: a[None]
    elif (match := re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb)\.(.+)", key)) and (
        layer := _rosinality_layer(int(match[1]), match[2])):
      name, noise_index = layer
      field = match[3]
      if field in _FIELDS:
        suffix, convert = _FIELDS[field]
        target = name + suffix
      elif field == "bias" and match[2] == "torgb":
        target, convert = name + ".bias", lambda a: a.reshape(1, -1, 1, 1)
      elif field == "bias":
        target = name + ".activate.bias"
      elif field == "noise_const" and noise_index >= 0:
        target, convert = f"noises.noise_{noise_index}", lambda a: a[None, None]
    if target is None:
      unknown.append(key)
      continue
    mapped[target] = convert(array) if convert is not None else array
    source_of[target] = (key, tuple(array.shape))
  return mapped, source_of, unknown, w_avg


def _attribute(records: dict, class_names: tuple[str, ...], name: str, src: str, default: Any) -> Any:
  """The one value of attribute `name` over the records of the given NV classes (default if none has it)."""
  values = {prefix: record.state[name] for prefix, record in records.items()
            if record.class_name in class_names and name in record.state}
  try:
    distinct = {None if value is None else float(value) for value in values.values()}
  except (TypeError, ValueError):
    raise UserError(f"{src}: attribute {name} is not a number: {values}") from None
  if len(distinct) > 1:
    raise UserError(f"{src}: layers disagree on {name}: " + ", ".join(f"{p}={v}" for p, v in values.items()))
  return distinct.pop() if distinct else default


def _check_supported(records: dict, src: str) -> None:
  for prefix, record in records.items():
    if record.class_name == "SynthesisLayer" and record.state.get("activation", "lrelu") != "lrelu":
      raise UserError(f"{src}: {prefix} uses activation {record.state['activation']!r}; only 'lrelu' is supported")
    if record.class_name == "SynthesisBlock" and record.state.get("architecture", "skip") != "skip":
      raise UserError(f"{src}: {prefix} has architecture {record.state['architecture']!r}; only 'skip' is supported")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--network", choices=("G_ema", "G"), default="G_ema",
                      help="which generator of the snapshot to port (default: the EMA weights, G_ema)")


def port(src: str, args: argparse.Namespace) -> Ported:
  snapshot = read_pickle(src)
  if not isinstance(snapshot, dict) or not isinstance(snapshot.get(args.network), Record):
    found = sorted(map(str, snapshot)) if isinstance(snapshot, dict) else type(snapshot).__name__
    raise UserError(f"{src}: expected a network pickle dict with a persistent {args.network!r}, found {found}")
  tensors, records = flatten(snapshot[args.network], src)
  _check_supported(records, src)
  state_dict, source_of, unknown, w_avg = to_rosinality(tensors, src)
  fields = dict(
      stylegan2.infer_fields(state_dict, src),
      lr_mlp=_attribute({p: r for p, r in records.items() if p.startswith("mapping.")}, ("FullyConnectedLayer",),
                        "bias_gain", src, 0.01),
      conv_clamp=_attribute(records, ("SynthesisLayer", "ToRGBLayer"), "conv_clamp", src, None),
  )
  act_gain = _attribute(records, ("SynthesisLayer",), "act_gain", src, math.sqrt(2))
  if not math.isclose(act_gain, math.sqrt(2)):
    raise UserError(f"{src}: synthesis layers use act_gain {act_gain}; only sqrt(2) is supported")
  variables = stylegan2.generator_variables(state_dict, fields, src, w_avg, source_of, unknown)
  generator_kwargs = snapshot[args.network].state.get("_init_kwargs") or {}
  resolution = generator_kwargs.get("img_resolution", fields["resolution"])
  if resolution != fields["resolution"]:
    raise UserError(f"{src}: _init_kwargs.img_resolution is {resolution} but the keys give {fields['resolution']}")
  architecture = {
      "kind": "stylegan2-ada",
      "module": stylegan2.MODULE,
      "fields": fields,
      "source_entry": args.network,
      "source_entries": sorted(map(str, snapshot)),
      "has_latent_avg": w_avg is not None,
      "n_latent": 2 * int(math.log2(fields["resolution"])) - 2,
      "nv_init_kwargs": _json_safe(generator_kwargs),
  }
  return Ported(variables=variables, architecture=architecture)


def _json_safe(value: Any) -> Any:
  """Dicts, lists and scalars of the NV constructor arguments as JSON values (others as their repr)."""
  if isinstance(value, dict):
    return {str(key): _json_safe(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(item) for item in value]
  if isinstance(value, (np.generic,)):
    return value.item()
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return repr(value)
