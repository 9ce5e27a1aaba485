"""Kind `clip`: OpenAI CLIP (ViT) or a Hugging Face CLIP folder (docs/weight_formats.md §4) -> models.clip.CLIP.

SRC is one of
  * an OpenAI `.pt`: the released TorchScript archives (read with `torch.jit.load(...).state_dict()`) or a plain
    `torch.save(state_dict)`; float16 tensors are cast to float32; the architecture is inferred from the shapes
    (§4.1, heads = width // 64 in both towers); `input_resolution`, `context_length`, `vocab_size` and `logit_scale`
    are dropped;
  * a Hugging Face folder: config.json and model.safetensors (or pytorch_model.bin); the architecture comes from the
    config.
The tokenizer goes into DST as vocab.json / merges.txt (the layout `vidstyleode_jax.text.ClipTokenizer` reads):
copied from a Hugging Face folder, or converted from OpenAI's `bpe_simple_vocab_16e6.txt.gz` given with `--bpe`.
"""

import argparse
import math
import os
import tempfile
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import transformers

from port_weights import hf_vision, torch_files
from port_weights.output import Ported
from vidstyleode_jax import text
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import clip as clip_lib

DESCRIPTION = (
    "OpenAI CLIP ViT checkpoint (.pt: TorchScript archive or torch.save state dict) or a Hugging Face CLIP folder "
    "(config.json + model.safetensors / pytorch_model.bin) -> vidstyleode_jax.models.clip.CLIP, with the tokenizer "
    "files vocab.json / merges.txt."
)
MODULE = "vidstyleode_jax.models.clip.CLIP"
OPENAI_IGNORED = (r"^input_resolution$", r"^context_length$", r"^vocab_size$", r"^logit_scale$")
OPENAI_BLOCK_NAMES = {
    "ln_1": "ln_1",
    "qkv": ("attn.in_proj_weight", "attn.in_proj_bias"),
    "out": "attn.out_proj",
    "ln_2": "ln_2",
    "fc1": "mlp.c_fc",
    "fc2": "mlp.c_proj",
}
TOKENIZER_FILES = ("vocab.json", "merges.txt")
HEAD_DIM = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      "--bpe", metavar="PATH",
      help="OpenAI's bpe_simple_vocab_16e6.txt.gz (in the open-clip-torch wheel), converted into DST's vocab.json / "
           "merges.txt; only for OpenAI files (a Hugging Face folder's own tokenizer files are copied)",
  )


def openai_fields(state_dict: Mapping[str, Any]) -> dict:
  """`models.clip.CLIP` fields from OpenAI key shapes (docs/weight_formats.md §4.1)."""
  shape = lambda key, what: hf_vision.stored_shape(state_dict, key, what)
  vision_width, _, patch, _ = shape("visual.conv1.weight", "vision width and patch size")
  positions = shape("visual.positional_embedding", "image grid")[0]
  grid = math.isqrt(positions - 1)
  if grid * grid != positions - 1:
    raise hf_vision.ConversionError(
        f"key 'visual.positional_embedding' has {positions} rows, expected 1 + grid * grid"
    )
  context_length, text_width = shape("positional_embedding", "context length and text width")
  return dict(
      embed_dim=shape("text_projection", "embedding size")[1],
      image_size=grid * patch,
      vision_patch_size=patch,
      vision_width=vision_width,
      vision_depth=hf_vision.layer_count(state_dict, "visual.transformer.resblocks."),
      vision_heads=vision_width // HEAD_DIM,
      vocab_size=shape("token_embedding.weight", "vocabulary size")[0],
      context_length=context_length,
      text_width=text_width,
      text_depth=hf_vision.layer_count(state_dict, "transformer.resblocks."),
      text_heads=text_width // HEAD_DIM,
  )


def hf_fields(config: transformers.CLIPConfig) -> dict:
  """`models.clip.CLIP` fields from a Hugging Face CLIPConfig; ConversionError for settings CLIP here lacks."""
  vision, text_config = config.vision_config, config.text_config
  for name, tower in (("vision_config", vision), ("text_config", text_config)):
    if tower.hidden_act != "quick_gelu" or tower.intermediate_size != 4 * tower.hidden_size:
      raise hf_vision.ConversionError(
          f"config.json {name}: hidden_act {tower.hidden_act!r} and intermediate_size {tower.intermediate_size} "
          f"are not OpenAI CLIP's 'quick_gelu' and 4 * hidden_size = {4 * tower.hidden_size}"
      )
    if not math.isclose(tower.layer_norm_eps, clip_lib.CLIP_LAYER_NORM_EPS):
      raise hf_vision.ConversionError(
          f"config.json {name}: layer_norm_eps {tower.layer_norm_eps}, but CLIP uses {clip_lib.CLIP_LAYER_NORM_EPS}"
      )
  return dict(
      embed_dim=config.projection_dim,
      image_size=vision.image_size,
      vision_patch_size=vision.patch_size,
      vision_width=vision.hidden_size,
      vision_depth=vision.num_hidden_layers,
      vision_heads=vision.num_attention_heads,
      vocab_size=text_config.vocab_size,
      context_length=text_config.max_position_embeddings,
      text_width=text_config.hidden_size,
      text_depth=text_config.num_hidden_layers,
      text_heads=text_config.num_attention_heads,
  )


def expected_params(fields: dict) -> dict:
  """Shapes of `CLIP(**fields)`'s params, without allocating them."""
  images = jax.ShapeDtypeStruct((1, fields["image_size"], fields["image_size"], 3), jnp.float32)
  token_ids = jax.ShapeDtypeStruct((1, fields["context_length"]), jnp.int32)
  return jax.eval_shape(clip_lib.CLIP(**fields).init, jax.random.key(0), images, token_ids)["params"]


def convert_openai_clip(state_dict: Mapping[str, Any]) -> tuple[dict, dict]:
  """An OpenAI CLIP state dict -> (CLIP fields, params checked against the module's shapes).

  Raises:
    hf_vision.ConversionError: a key missing, left over or misshapen, or shapes that fit no CLIP.
  """
  fields = openai_fields(state_dict)
  read = hf_vision.KeyReader(state_dict, OPENAI_IGNORED)
  tree = {
      "visual": {
          "patch_embed": {"kernel": read("visual.conv1.weight", hf_vision.OIHW_TO_HWIO)},
          "cls_token": read("visual.class_embedding"),
          "pos_embed": read("visual.positional_embedding"),
          "ln_pre": hf_vision.layer_norm(read, "visual.ln_pre"),
          **hf_vision.blocks(read, "visual.transformer.resblocks.", OPENAI_BLOCK_NAMES),
          "ln_post": hf_vision.layer_norm(read, "visual.ln_post"),
      },
      "visual_projection": {"kernel": read("visual.proj")},
      "text": {
          "token_embedding": {"embedding": read("token_embedding.weight")},
          "pos_embed": read("positional_embedding"),
          **hf_vision.blocks(read, "transformer.resblocks.", OPENAI_BLOCK_NAMES),
          "ln_final": hf_vision.layer_norm(read, "ln_final"),
      },
      "text_projection": {"kernel": read("text_projection")},
  }
  params = read.finish(tree, expected_params(fields))
  if "input_resolution" in state_dict and int(state_dict["input_resolution"]) != fields["image_size"]:
    raise hf_vision.ConversionError(
        f"input_resolution {int(state_dict['input_resolution'])} differs from the {fields['image_size']} px that "
        "the patch size and position table give"
    )
  return fields, params


def read_hf_folder(src: str) -> tuple[transformers.CLIPConfig, dict]:
  """(config, state dict) of a Hugging Face CLIPModel folder."""
  try:
    config = transformers.CLIPConfig.from_pretrained(src)
  except (OSError, ValueError) as error:
    raise UserError(f"{src}: no readable CLIP config.json: {error}") from None
  return config, hf_vision.load_hf_weights(src)


def openai_tokenizer(bpe_path: str, vocab_size: int, src: str) -> dict[str, bytes]:
  """vocab.json / merges.txt converted from OpenAI's BPE merge file; its size must match the model's."""
  with tempfile.TemporaryDirectory() as folder:
    try:
      size = text.convert_openai_bpe(bpe_path, folder)
    except (OSError, EOFError, UnicodeDecodeError) as error:
      raise UserError(f"{bpe_path}: not a readable bpe_simple_vocab_16e6.txt.gz: {error}") from None
    if size != vocab_size:
      raise UserError(f"{src}: {bpe_path} gives {size} tokens, but token_embedding.weight has {vocab_size} rows")
    files = {}
    for name in TOKENIZER_FILES:
      with open(os.path.join(folder, name), "rb") as f:
        files[name] = f.read()
  return files


def hf_tokenizer(src: str) -> dict[str, bytes]:
  """vocab.json / merges.txt of a Hugging Face folder; nothing unless both are there."""
  paths = [os.path.join(src, name) for name in TOKENIZER_FILES]
  if not all(os.path.exists(path) for path in paths):
    return {}
  files = {}
  for name, path in zip(TOKENIZER_FILES, paths):
    with open(path, "rb") as f:
      files[name] = f.read()
  return files


def port(src: str, args: argparse.Namespace) -> Ported:
  try:
    if os.path.isdir(src):
      if args.bpe:
        raise UserError(f"{src}: --bpe is for OpenAI files; a Hugging Face folder's tokenizer files are copied")
      config, state_dict = read_hf_folder(src)
      fields = hf_fields(config)
      params = hf_vision.convert_hf_clip(state_dict, expected_params(fields))
      source_format, extra_files = "huggingface", hf_tokenizer(src)
    else:
      fields, params = convert_openai_clip(torch_files.read_state_dict(src))
      source_format = "openai"
      extra_files = openai_tokenizer(args.bpe, fields["vocab_size"], src) if args.bpe else {}
  except hf_vision.ConversionError as error:
    raise UserError(f"{src}: {error}") from None
  if set(extra_files) != set(TOKENIZER_FILES):
    warnings.warn(
        f"{src}: no tokenizer ({' and '.join(TOKENIZER_FILES)}) written to DST"
        + ("" if source_format == "huggingface" else "; pass --bpe bpe_simple_vocab_16e6.txt.gz"),
        stacklevel=2,
    )
  architecture = {
      "kind": "clip",
      "module": MODULE,
      "fields": fields,
      "source_format": source_format,
      "tokenizer_files": sorted(extra_files),
  }
  return Ported(variables={"params": params}, architecture=architecture, extra_files=extra_files)
