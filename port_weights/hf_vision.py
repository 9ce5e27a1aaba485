"""Hugging Face PyTorch `CLIPModel` / `ViTModel` state dicts -> Flax params of models/clip.py and models/vit.py.

Linear weights are transposed to [in, out] kernels, the patch conv goes OIHW -> HWIO, LayerNorm weight -> scale,
and the CLS / position tables lose their leading singleton axes. Every key must be consumed; only the entries of
`IGNORED` may be left over. Hyper-parameters (heads, eps, ...) are not read here: they are module fields.
"""

import re
from typing import Any, Callable, Mapping

import numpy as np

IGNORED = (
    re.compile(r".*position_ids$"),
    re.compile(r"^logit_scale$"),
    re.compile(r"^pooler\."),
)

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


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):
    value = value.detach().cpu().float().numpy()
  return np.asarray(value, dtype=np.float32)


class _KeyReader:
  """Hands out state-dict entries as float32 NumPy arrays and reports what was never read."""

  def __init__(self, state_dict: Mapping[str, Any]):
    self._state_dict = state_dict
    self._unread = set(state_dict)

  def __call__(self, key: str) -> np.ndarray:
    if key not in self._state_dict:
      raise KeyError(f"state dict has no key {key!r}")
    self._unread.discard(key)
    return _to_numpy(self._state_dict[key])

  def layer_count(self, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in self._state_dict if (m := pattern.match(key))}
    if indices != set(range(len(indices))):
      raise KeyError(f"layers under {prefix!r} are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)

  def check_all_read(self):
    unread = sorted(key for key in self._unread if not any(p.match(key) for p in IGNORED))
    if unread:
      raise KeyError(f"state dict keys not converted: {unread}")


def _dense(read: Callable[[str], np.ndarray], name: str, use_bias: bool = True) -> dict[str, np.ndarray]:
  params = {"kernel": read(name + ".weight").T}
  if use_bias:
    params["bias"] = read(name + ".bias")
  return params


def _layer_norm(read: Callable[[str], np.ndarray], name: str) -> dict[str, np.ndarray]:
  return {"scale": read(name + ".weight"), "bias": read(name + ".bias")}


def _patch_conv(read: Callable[[str], np.ndarray], name: str, use_bias: bool) -> dict[str, np.ndarray]:
  params = {"kernel": read(name + ".weight").transpose(2, 3, 1, 0)}
  if use_bias:
    params["bias"] = read(name + ".bias")
  return params


def _blocks(read: _KeyReader, prefix: str, names: Mapping[str, str]) -> dict[str, Any]:
  """`blocks_{i}` params from layers `{prefix}{i}.{names[...]}`."""
  blocks = {}
  for index in range(read.layer_count(prefix)):
    layer = f"{prefix}{index}."
    blocks[f"blocks_{index}"] = {
        "ln_1": _layer_norm(read, layer + names["ln_1"]),
        "attn": {name: _dense(read, layer + names[name]) for name in ("query", "key", "value", "out")},
        "ln_2": _layer_norm(read, layer + names["ln_2"]),
        "mlp": {name: _dense(read, layer + names[name]) for name in ("fc1", "fc2")},
    }
  return blocks


def convert_hf_clip(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """HF `CLIPModel.state_dict()` -> params of `models.clip.CLIP`."""
  read = _KeyReader(state_dict)
  vision = "vision_model."
  text = "text_model."
  params = {
      "visual": {
          "patch_embed": _patch_conv(read, vision + "embeddings.patch_embedding", use_bias=False),
          "cls_token": read(vision + "embeddings.class_embedding"),
          "pos_embed": read(vision + "embeddings.position_embedding.weight"),
          "ln_pre": _layer_norm(read, vision + "pre_layrnorm"),
          **_blocks(read, vision + "encoder.layers.", CLIP_BLOCK_NAMES),
          "ln_post": _layer_norm(read, vision + "post_layernorm"),
      },
      "visual_projection": _dense(read, "visual_projection", use_bias=False),
      "text": {
          "token_embedding": {"embedding": read(text + "embeddings.token_embedding.weight")},
          "pos_embed": read(text + "embeddings.position_embedding.weight"),
          **_blocks(read, text + "encoder.layers.", CLIP_BLOCK_NAMES),
          "ln_final": _layer_norm(read, text + "final_layer_norm"),
      },
      "text_projection": _dense(read, "text_projection", use_bias=False),
  }
  read.check_all_read()
  return params


def convert_hf_vit(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """HF `ViTModel(add_pooling_layer=False).state_dict()` (e.g. facebook/dino-*) -> `models.vit.VisionTransformer`.

  The HF DINO configs say layer_norm_eps 1e-12; the module must use DINO's 1e-6 (checkpoints.md §5.3).
  """
  read = _KeyReader(state_dict)
  width = read("embeddings.cls_token").shape[-1]
  params = {
      "patch_embed": _patch_conv(read, "embeddings.patch_embeddings.projection", use_bias=True),
      "cls_token": read("embeddings.cls_token").reshape(width),
      "pos_embed": read("embeddings.position_embeddings").reshape(-1, width),
      **_blocks(read, "encoder.layer.", VIT_BLOCK_NAMES),
      "ln_post": _layer_norm(read, "layernorm"),
  }
  read.check_all_read()
  return params
