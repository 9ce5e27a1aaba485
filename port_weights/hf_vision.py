"""PyTorch CLIP / ViT state dicts -> Flax params of models/clip.py and models/vit.py.

The reading machinery here is shared by the Hugging Face layouts (this module), the OpenAI CLIP layout
(port_weights/clip.py) and the facebookresearch DINO layout (port_weights/dino.py). Linear weights are transposed to
[in, out] kernels, the patch conv goes OIHW -> HWIO, LayerNorm weight -> scale, fused q/k/v rows are split into
thirds, and the CLS / position tables lose their leading singleton axes.

A converter reads each key through a `KeyReader`, which returns a `Leaf` that remembers the key, its stored shape and
how a Flax shape maps back to a stored shape. `KeyReader.finish` then requires every key to be consumed (only the
reader's `ignored` patterns may be left over) and, given the shapes of `jax.eval_shape` of the module's init, every
shape to match; its errors name the stored key with the expected and found stored shapes.
"""

import dataclasses
import os
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import safetensors.numpy
import torch
from flax import traverse_util

from port_weights import output

HF_IGNORED = (r".*position_ids$", r"^logit_scale$", r"^pooler\.")

CLIP_BLOCK_NAMES = {
    "ln_1": "layer_norm1",
    "query": "self_attn.q_proj",
    "key": "self_attn.k_proj",
    "value": "self_attn.v_proj",
    "out": "self_attn.out_proj",
    "ln_2": "layer_norm2",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
}

VIT_BLOCK_NAMES = {
    "ln_1": "layernorm_before",
    "query": "attention.attention.query",
    "key": "attention.attention.key",
    "value": "attention.attention.value",
    "out": "attention.output.dense",
    "ln_2": "layernorm_after",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
}

QKV_NAMES = ("query", "key", "value")


class ConversionError(KeyError):
  """A state dict that does not fit the module: missing, unexpected or misshapen keys."""

  def __str__(self) -> str:
    return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Transform:
  """How a stored array becomes a Flax array, and which stored shape a given Flax shape needs."""

  forward: Callable[[np.ndarray], np.ndarray]
  stored_shape: Callable[[tuple[int, ...]], tuple[int, ...]]


COPY = Transform(lambda array: array, lambda shape: shape)
TRANSPOSE = Transform(np.transpose, lambda shape: tuple(reversed(shape)))
OIHW_TO_HWIO = Transform(
    lambda array: array.transpose(2, 3, 1, 0), lambda shape: (shape[3], shape[2], shape[0], shape[1])
)


def squeeze_leading(count: int) -> Transform:
  """Drops `count` leading singleton axes, e.g. DINO's cls_token [1, 1, D] -> [D]; other shapes pass unchanged."""

  def forward(array):
    return array.reshape(array.shape[count:]) if array.shape[:count] == (1,) * count else array

  return Transform(forward, lambda shape: (1,) * count + shape)


def qkv_kernel(part: int) -> Transform:
  """Rows part*D ... (part+1)*D of a fused [3D, D] q/k/v weight (order q, k, v), as a [D, D] kernel."""

  def forward(array):
    rows = array.shape[0] // 3
    return array[part * rows:(part + 1) * rows].T

  return Transform(forward, lambda shape: (3 * shape[1], shape[0]))


def qkv_bias(part: int) -> Transform:
  """Entries part*D ... (part+1)*D of a fused [3D] q/k/v bias."""

  def forward(array):
    rows = array.shape[0] // 3
    return array[part * rows:(part + 1) * rows]

  return Transform(forward, lambda shape: (3 * shape[0],))


@dataclasses.dataclass(frozen=True)
class Leaf:
  """A converted array (None when its key is missing) and where it came from."""

  value: np.ndarray | None
  key: str
  stored_shape: tuple[int, ...] | None
  transform: Transform


def load_hf_weights(folder: str) -> dict:
  """The state dict of a Hugging Face model folder: model.safetensors, else pytorch_model.bin (weights only)."""
  safetensors_path = os.path.join(folder, "model.safetensors")
  if os.path.exists(safetensors_path):
    return dict(safetensors.numpy.load_file(safetensors_path))
  bin_path = os.path.join(folder, "pytorch_model.bin")
  if os.path.exists(bin_path):
    return dict(torch.load(bin_path, map_location="cpu", weights_only=True))
  raise ConversionError(f"neither model.safetensors nor pytorch_model.bin in {folder}")


def stored_shape(state_dict: Mapping[str, Any], key: str, needed_for: str) -> tuple[int, ...]:
  """The shape of one entry, used to infer the architecture; a missing key is a ConversionError."""
  if key not in state_dict:
    raise ConversionError(f"no key {key!r}, needed to infer the {needed_for}")
  return tuple(state_dict[key].shape)


def layer_count(state_dict: Mapping[str, Any], prefix: str) -> int:
  """The number of layers `{prefix}{i}.`; they must be numbered 0 ... n-1."""
  pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
  indices = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
  if indices != set(range(len(indices))):
    raise ConversionError(f"layers under {prefix!r} are not numbered 0..n-1: {sorted(indices)}")
  return len(indices)


class KeyReader:
  """Hands out state-dict entries as `Leaf`s and checks, at the end, what was missing, left over or misshapen."""

  def __init__(self, state_dict: Mapping[str, Any], ignored: Sequence[str] = ()):
    self._state_dict = state_dict
    self._ignored = [re.compile(pattern) for pattern in ignored]
    self._unread = set(state_dict)
    self._missing = []

  def __call__(self, key: str, transform: Transform = COPY) -> Leaf:
    if key not in self._state_dict:
      self._missing.append(key)
      return Leaf(None, key, None, transform)
    self._unread.discard(key)
    array = output.to_float32(self._state_dict[key])
    return Leaf(transform.forward(array), key, array.shape, transform)

  def layer_count(self, prefix: str) -> int:
    return layer_count(self._state_dict, prefix)

  def finish(self, tree: dict, expected: dict | None = None) -> dict:
    """Checks the keys (and, given `expected`, the shapes) and returns the params as float32 NumPy arrays.

    Args:
      tree: nested dict of `Leaf`s, as built by a converter.
      expected: nested dict of arrays or `jax.ShapeDtypeStruct`s with the module's parameter shapes, e.g.
        `jax.eval_shape(module.init, ...)["params"]`; None checks the keys only.

    Raises:
      ConversionError: keys missing or left over; or the problems `output.variable_problems` finds against
        `expected`: a stored shape that differs from the one the module needs (named with the key, in the stored
        layout), parameters the module lacks or that were not produced.
    """
    unexpected = sorted(key for key in self._unread if not any(p.match(key) for p in self._ignored))
    if self._missing or unexpected:
      raise ConversionError(f"missing keys: {self._missing}; unexpected keys: {unexpected}")
    leaves = traverse_util.flatten_dict(tree)
    params = traverse_util.unflatten_dict({path: np.ascontiguousarray(leaf.value) for path, leaf in leaves.items()})
    if expected is not None:
      sources = {path: (leaf.key, leaf.stored_shape, leaf.transform.stored_shape) for path, leaf in leaves.items()}
      problems = output.variable_problems(params, expected, sources)
      if problems:
        raise ConversionError("; ".join(problems))
    return params


def dense(read: KeyReader, name: str, use_bias: bool = True) -> dict[str, Leaf]:
  params = {"kernel": read(name + ".weight", TRANSPOSE)}
  if use_bias:
    params["bias"] = read(name + ".bias")
  return params


def layer_norm(read: KeyReader, name: str) -> dict[str, Leaf]:
  return {"scale": read(name + ".weight"), "bias": read(name + ".bias")}


def patch_conv(read: KeyReader, name: str, use_bias: bool) -> dict[str, Leaf]:
  params = {"kernel": read(name + ".weight", OIHW_TO_HWIO)}
  if use_bias:
    params["bias"] = read(name + ".bias")
  return params


def blocks(read: KeyReader, prefix: str, names: Mapping[str, Any]) -> dict[str, Any]:
  """`blocks_{i}` params of models/vit.py from layers `{prefix}{i}.{names[...]}`.

  `names` maps ln_1, out, ln_2, fc1, fc2 to module names, and either query, key, value to module names or `qkv` to
  the (weight key, bias key) pair of a fused [3D, D] projection.
  """
  result = {}
  for index in range(read.layer_count(prefix)):
    layer = f"{prefix}{index}."
    if "qkv" in names:
      weight, bias = names["qkv"]
      attn = {
          name: {"kernel": read(layer + weight, qkv_kernel(part)), "bias": read(layer + bias, qkv_bias(part))}
          for part, name in enumerate(QKV_NAMES)
      }
    else:
      attn = {name: dense(read, layer + names[name]) for name in QKV_NAMES}
    attn["out"] = dense(read, layer + names["out"])
    result[f"blocks_{index}"] = {
        "ln_1": layer_norm(read, layer + names["ln_1"]),
        "attn": attn,
        "ln_2": layer_norm(read, layer + names["ln_2"]),
        "mlp": {name: dense(read, layer + names[name]) for name in ("fc1", "fc2")},
    }
  return result


def convert_hf_clip(state_dict: Mapping[str, Any], expected: dict | None = None) -> dict[str, Any]:
  """HF `CLIPModel.state_dict()` -> params of `models.clip.CLIP` (`expected`: see `KeyReader.finish`)."""
  read = KeyReader(state_dict, HF_IGNORED)
  vision = "vision_model."
  text = "text_model."
  tree = {
      "visual": {
          "patch_embed": patch_conv(read, vision + "embeddings.patch_embedding", use_bias=False),
          "cls_token": read(vision + "embeddings.class_embedding"),
          "pos_embed": read(vision + "embeddings.position_embedding.weight"),
          "ln_pre": layer_norm(read, vision + "pre_layrnorm"),
          **blocks(read, vision + "encoder.layers.", CLIP_BLOCK_NAMES),
          "ln_post": layer_norm(read, vision + "post_layernorm"),
      },
      "visual_projection": dense(read, "visual_projection", use_bias=False),
      "text": {
          "token_embedding": {"embedding": read(text + "embeddings.token_embedding.weight")},
          "pos_embed": read(text + "embeddings.position_embedding.weight"),
          **blocks(read, text + "encoder.layers.", CLIP_BLOCK_NAMES),
          "ln_final": layer_norm(read, text + "final_layer_norm"),
      },
      "text_projection": dense(read, "text_projection", use_bias=False),
  }
  return read.finish(tree, expected)


def convert_hf_vit(state_dict: Mapping[str, Any], expected: dict | None = None) -> dict[str, Any]:
  """HF `ViTModel(add_pooling_layer=False).state_dict()` (e.g. facebook/dino-*) -> `models.vit.VisionTransformer`.

  The HF DINO configs say layer_norm_eps 1e-12; the module must use DINO's 1e-6 (docs/weight_formats.md §5.3).
  """
  read = KeyReader(state_dict, HF_IGNORED)
  tree = {
      "patch_embed": patch_conv(read, "embeddings.patch_embeddings.projection", use_bias=True),
      "cls_token": read("embeddings.cls_token", squeeze_leading(2)),
      "pos_embed": read("embeddings.position_embeddings", squeeze_leading(1)),
      **blocks(read, "encoder.layer.", VIT_BLOCK_NAMES),
      "ln_post": layer_norm(read, "layernorm"),
  }
  return read.finish(tree, expected)
