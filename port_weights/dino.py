"""Kind `dino`: a facebookresearch DINO ViT or a Hugging Face ViT folder (docs/weight_formats.md §5) -> dino_vit.

SRC is one of
  * a backbone release `.pth` (`dino_vitbase16_pretrain.pth`, ...): a plain state dict;
  * a full training checkpoint: `teacher` / `student` state dicts (keys `backbone.` / `module.backbone.` plus the
    DINOHead's `head.`), `args` as an argparse.Namespace (allow-listed for weights_only loading); `--which` picks
    the network (default teacher), the prefixes are stripped and the head is dropped;
  * a Hugging Face folder (ViTModel: config.json + model.safetensors or pytorch_model.bin). The hub DINO configs say
    layer_norm_eps 1e-12; DINO was trained with 1e-6, which the port always uses (§5.3).
The architecture is inferred from the shapes: patch size, width, depth, MLP width, heads = width // 64, and the
pretrained (square) position grid.
"""

import argparse
import math
import os
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import transformers

from port_weights import hf_vision
from port_weights.output import Ported
from port_weights.stylegan2 import load_torch_file
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import dino as dino_lib

DESCRIPTION = (
    "facebookresearch/dino ViT (.pth backbone state dict or full checkpoint with teacher/student) or a Hugging Face "
    "ViT folder -> vidstyleode_jax.models.dino.dino_vit(...), LayerNorm eps 1e-6."
)
MODULE = "vidstyleode_jax.models.dino.dino_vit"
DINO_LAYER_NORM_EPS = 1e-6
HEAD_DIM = 64
DINO_BLOCK_NAMES = {
    "ln_1": "norm1",
    "qkv": ("attn.qkv.weight", "attn.qkv.bias"),
    "out": "attn.proj",
    "ln_2": "norm2",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
}
# Prefixes of the networks in a full checkpoint (docs/weight_formats.md §5.1), stripped in this order.
NETWORK_PREFIXES = ("module.", "backbone.")
HEAD_PREFIX = "head."


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      "--which", choices=("teacher", "student"), default="teacher",
      help="for a full training checkpoint: which network's backbone to port (default: teacher, as DINO releases)",
  )


def pretrained_grid(positions: int, key: str) -> int:
  """The side of the square patch grid of a position table with `positions` rows (CLS included)."""
  grid = math.isqrt(positions - 1)
  if grid * grid != positions - 1:
    raise hf_vision.ConversionError(f"key {key!r} has {positions} positions, expected 1 + grid * grid")
  return grid


def dino_fields(state_dict: Mapping[str, Any]) -> dict:
  """`dino_vit` fields plus `pretrained_grid` from DINO key shapes (docs/weight_formats.md §5.2)."""
  shape = lambda key, what: hf_vision.stored_shape(state_dict, key, what)
  width, _, patch_size, _ = shape("patch_embed.proj.weight", "width and patch size")
  return dict(
      patch_size=patch_size,
      width=width,
      depth=hf_vision.layer_count(state_dict, "blocks."),
      num_heads=width // HEAD_DIM,
      mlp_dim=shape("blocks.0.mlp.fc1.weight", "MLP width")[0],
      pretrained_grid=pretrained_grid(shape("pos_embed", "position grid")[1], "pos_embed"),
  )


def hf_fields(config: transformers.ViTConfig, state_dict: Mapping[str, Any]) -> dict:
  """`dino_vit` fields plus `pretrained_grid` from a Hugging Face ViTConfig; eps is DINO's whatever it says."""
  if config.hidden_act != "gelu" or not config.qkv_bias:
    raise hf_vision.ConversionError(
        f"config.json: hidden_act {config.hidden_act!r}, qkv_bias {config.qkv_bias}; DINO uses 'gelu' and qkv_bias"
    )
  if config.layer_norm_eps != DINO_LAYER_NORM_EPS:
    warnings.warn(
        f"config.json says layer_norm_eps {config.layer_norm_eps}; using DINO's {DINO_LAYER_NORM_EPS}", stacklevel=2
    )
  key = "embeddings.position_embeddings"
  return dict(
      patch_size=config.patch_size,
      width=config.hidden_size,
      depth=config.num_hidden_layers,
      num_heads=config.num_attention_heads,
      mlp_dim=config.intermediate_size,
      pretrained_grid=pretrained_grid(hf_vision.stored_shape(state_dict, key, "position grid")[1], key),
  )


def build(fields: dict):
  """The Flax module for fields as returned by `dino_fields` / `hf_fields`."""
  return dino_lib.dino_vit(**fields)


def expected_params(fields: dict) -> dict:
  """Shapes of the DINO ViT's params, without allocating them."""
  side = fields["pretrained_grid"] * fields["patch_size"]
  images = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  return jax.eval_shape(build(fields).init, jax.random.key(0), images)["params"]


def convert_dino_vit(state_dict: Mapping[str, Any]) -> tuple[dict, dict]:
  """A DINO backbone state dict -> (fields, params checked against the module's shapes).

  Raises:
    hf_vision.ConversionError: a key missing, left over or misshapen, or shapes that fit no DINO ViT.
  """
  fields = dino_fields(state_dict)
  read = hf_vision.KeyReader(state_dict)
  tree = {
      "patch_embed": hf_vision.patch_conv(read, "patch_embed.proj", use_bias=True),
      "cls_token": read("cls_token", hf_vision.squeeze_leading(2)),
      "pos_embed": read("pos_embed", hf_vision.squeeze_leading(1)),
      **hf_vision.blocks(read, "blocks.", DINO_BLOCK_NAMES),
      "ln_post": hf_vision.layer_norm(read, "norm"),
  }
  return fields, read.finish(tree, expected_params(fields))


def backbone(checkpoint: Mapping[str, Any], which: str, src: str) -> tuple[dict, str]:
  """(backbone state dict, where it came from) of a backbone file or of a full checkpoint's `which` network."""
  if not {"teacher", "student"} & set(checkpoint):
    return dict(checkpoint), "state_dict"
  if which not in checkpoint:
    raise UserError(f"{src}: a full checkpoint without {which!r}; its entries are {sorted(checkpoint)}")
  network = checkpoint[which]
  if not isinstance(network, Mapping):
    raise UserError(f"{src}: entry {which!r} is a {type(network).__name__}, expected a state dict")
  state_dict = {}
  for key, value in network.items():
    for prefix in NETWORK_PREFIXES:
      key = key.removeprefix(prefix)
    if not key.startswith(HEAD_PREFIX):
      state_dict[key] = value
  return state_dict, which


def port(src: str, args: argparse.Namespace) -> Ported:
  try:
    if os.path.isdir(src):
      try:
        config = transformers.ViTConfig.from_pretrained(src)
      except (OSError, ValueError) as error:
        raise UserError(f"{src}: no readable ViT config.json: {error}") from None
      state_dict = hf_vision.load_hf_weights(src)
      fields = hf_fields(config, state_dict)
      params = hf_vision.convert_hf_vit(state_dict, expected_params(fields))
      source_entry = "huggingface"
    else:
      checkpoint = load_torch_file(src)
      if not isinstance(checkpoint, Mapping):
        raise UserError(f"{src}: expected a state dict or a full checkpoint, found {type(checkpoint).__name__}")
      state_dict, source_entry = backbone(checkpoint, args.which, src)
      fields, params = convert_dino_vit(state_dict)
  except hf_vision.ConversionError as error:
    raise UserError(f"{src}: {error}") from None
  architecture = {
      "kind": "dino",
      "module": MODULE,
      "fields": fields,
      "layer_norm_eps": DINO_LAYER_NORM_EPS,
      "source_entry": source_entry,
  }
  return Ported(variables={"params": params}, architecture=architecture)
