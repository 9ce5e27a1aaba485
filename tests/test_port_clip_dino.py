"""`python -m port_weights clip|dino`: tiny PyTorch fixtures in the released on-disk formats, ported by the CLI,
loaded with `vidstyleode_jax.ported.load` and run against PyTorch references (docs/weight_formats.md §4.6, §5.6)."""

import argparse
import copy
import functools
import gzip
import json

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.numpy import load_file

from port_weights import clip as clip_port
from port_weights import dino as dino_port
from port_weights.__main__ import main as port_main
from tests.reference import dino_vit as dino_reference
from tests.reference import openai_clip as clip_reference
from vidstyleode_jax import ported
from vidstyleode_jax import text
from vidstyleode_jax.models import clip as clip_lib
from vidstyleode_jax.models import dino as dino_lib

TOLERANCE = 1e-4
# A toy OpenAI BPE file: header, then merges; vocabulary 2 * 256 + 6 merges + SOT + EOT = 520, EOT = 519.
TOY_MERGES = ("h e", "l l", "w o", "r l", "he ll", "wo rl")
TOY_VOCAB_SIZE = 520
CONTEXT = 16
CLIP_FIELDS = dict(
    embed_dim=16, image_size=32, vision_patch_size=8, vision_width=128, vision_depth=2, vision_heads=2,
    vocab_size=TOY_VOCAB_SIZE, context_length=CONTEXT, text_width=64, text_depth=2, text_heads=1,
)
DINO_FIELDS = dict(patch_size=8, width=128, depth=3, num_heads=2, mlp_dim=256)
DINO_SHORT_SIDE = 40  # 60x50 inputs -> 48x40 -> a 6x5 grid: non-square, non-native (pretrained grid 4)
KEY_LAYER, CLS_LAYER = 2, 1
FP16_KEYS = ("visual.conv1.weight", "visual.transformer.resblocks.0.attn.in_proj_weight", "token_embedding.weight",
             "text_projection")


@pytest.fixture(autouse=True)
def float32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def randomise_layer_norms(model: torch.nn.Module, seed: int):
  """LayerNorm weights away from (1, 0), so eps and affine mistakes show."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.LayerNorm):
        module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=generator))
        module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=generator))


def run_port(*argv) -> None:
  assert port_main([str(arg) for arg in argv]) == 0


def to_torch_images(images):
  return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


# ------------------------------------------------------------------------------------------------------------ CLIP


@functools.cache
def clip_encoders(fields: tuple):
  """Jitted (encode_image, encode_text) of CLIP(**dict(fields)), shared by fixtures of one architecture."""
  model = clip_lib.CLIP(**dict(fields))
  return (jax.jit(functools.partial(model.apply, method="encode_image")),
          jax.jit(functools.partial(model.apply, method="encode_text")))


def clip_inputs(vocab_size):
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
  ids = np.zeros((3, CONTEXT), np.int64)
  for row, length in enumerate((0, 5, CONTEXT - 2)):
    ids[row, 1:length + 1] = rng.integers(0, vocab_size - 1, size=length)
    ids[row, length + 1] = vocab_size - 1
  return images, ids


def assert_clip_matches(dst, image_expected, text_expected):
  architecture, variables = ported.load(str(dst), kind="clip")
  module = ported.build_module(architecture)
  encode_image, encode_text = clip_encoders(tuple(sorted(architecture["fields"].items())))
  images, ids = clip_inputs(module.vocab_size)
  got_image = np.asarray(encode_image(variables, images))
  got_text = np.asarray(encode_text(variables, ids.astype(np.int32)))
  np.testing.assert_allclose(got_image, image_expected, rtol=0, atol=TOLERANCE)
  np.testing.assert_allclose(got_text, text_expected, rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def openai_clip():
  torch.manual_seed(0)
  model = clip_reference.CLIP(
      embed_dim=16, image_size=32, vision_patch_size=8, vision_width=128, vision_layers=2,
      vocab_size=TOY_VOCAB_SIZE, context_length=CONTEXT, text_width=64, text_layers=2,
  ).eval()
  randomise_layer_norms(model, seed=1)
  return model


@pytest.fixture(scope="module")
def toy_bpe(tmp_path_factory):
  path = tmp_path_factory.mktemp("bpe") / "bpe_toy.txt.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("#version: toy\n" + "".join(line + "\n" for line in TOY_MERGES))
  return path


def reference_clip_outputs(model):
  images, ids = clip_inputs(TOY_VOCAB_SIZE)
  with torch.no_grad():
    return model.encode_image(to_torch_images(images)).numpy(), model.encode_text(torch.from_numpy(ids)).numpy()


def test_clip_torchscript_archive_matches_reference(openai_clip, toy_bpe, tmp_path):
  """The released format: a traced TorchScript archive carrying input_resolution / context_length / vocab_size."""
  traced_model = copy.deepcopy(openai_clip)
  for name, value in (("input_resolution", 32), ("context_length", CONTEXT), ("vocab_size", TOY_VOCAB_SIZE)):
    traced_model.register_buffer(name, torch.tensor(value))
  images, ids = clip_inputs(TOY_VOCAB_SIZE)
  # check_trace=False: the eval-mode MultiheadAttention fast path records a different graph on a second run.
  traced = torch.jit.trace(traced_model, (to_torch_images(images), torch.from_numpy(ids)), check_trace=False)
  traced.save(str(tmp_path / "ViT-toy.pt"))
  assert "input_resolution" in torch.jit.load(str(tmp_path / "ViT-toy.pt")).state_dict()
  run_port("clip", tmp_path / "ViT-toy.pt", tmp_path / "ported", "--bpe", toy_bpe)
  assert_clip_matches(tmp_path / "ported", *reference_clip_outputs(openai_clip))

  architecture, _ = ported.load(str(tmp_path / "ported"))
  assert architecture["fields"] == CLIP_FIELDS
  with open(tmp_path / "ported" / "vocab.json") as f:
    vocab = json.load(f)
  assert (vocab["hell"], vocab["<|endoftext|>"]) == (512 + TOY_MERGES.index("he ll"), TOY_VOCAB_SIZE - 1)
  tokenizer = text.ClipTokenizer(str(tmp_path / "ported"))
  assert tokenizer("hello")[0, :4].tolist() == [
      vocab["<|startoftext|>"], vocab["hell"], vocab["o</w>"], vocab["<|endoftext|>"]]


@pytest.mark.parametrize("fp16", [False, True], ids=["float32", "some_float16"])
def test_clip_state_dict_matches_reference(openai_clip, tmp_path, fp16):
  """A plain torch.save(state_dict); one variant stores some tensors in float16, as the releases do."""
  model = copy.deepcopy(openai_clip)
  state_dict = model.state_dict()
  if fp16:
    with torch.no_grad():
      for key in FP16_KEYS:
        state_dict[key] = state_dict[key].half()
        model.get_parameter(key).copy_(state_dict[key].float())
  torch.save(state_dict, tmp_path / "clip.pt")
  with pytest.warns(UserWarning, match="no tokenizer"):
    run_port("clip", tmp_path / "clip.pt", tmp_path / "ported")
  assert_clip_matches(tmp_path / "ported", *reference_clip_outputs(model))
  assert sorted(path.name for path in (tmp_path / "ported").iterdir()) == [
      "architecture.json", "source.sha256", "variables.msgpack"]


@pytest.fixture(scope="module", params=[TOY_VOCAB_SIZE - 1, 2], ids=["eos_first_match", "eos_argmax"])
def hf_clip_folder(request, tmp_path_factory):
  """A tiny HF CLIPModel saved with save_pretrained (both eos_token_id pooling conventions), with tokenizer files."""
  torch.manual_seed(2)
  config = transformers.CLIPConfig(
      projection_dim=8,
      text_config=dict(
          vocab_size=TOY_VOCAB_SIZE, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
          num_attention_heads=4, max_position_embeddings=CONTEXT, eos_token_id=request.param, bos_token_id=1,
          pad_token_id=0,
      ),
      vision_config=dict(
          hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, image_size=32,
          patch_size=8,
      ),
  )
  model = transformers.CLIPModel(config).eval()
  randomise_layer_norms(model, seed=3)
  folder = tmp_path_factory.mktemp("hf_clip")
  model.save_pretrained(folder)
  text.write_vocabulary_of(str(folder), ["hello world"])
  return model, folder


def test_clip_hf_folder_matches_transformers(hf_clip_folder, tmp_path):
  model, folder = hf_clip_folder
  run_port("clip", folder, tmp_path / "ported")
  images, ids = clip_inputs(TOY_VOCAB_SIZE)
  with torch.no_grad():
    image_expected = model.get_image_features(pixel_values=to_torch_images(images)).pooler_output.numpy()
    text_expected = model.get_text_features(input_ids=torch.from_numpy(ids)).pooler_output.numpy()
  assert_clip_matches(tmp_path / "ported", image_expected, text_expected)
  architecture, _ = ported.load(str(tmp_path / "ported"))
  assert architecture["fields"] == dict(CLIP_FIELDS, embed_dim=8, vision_width=64, text_heads=4)
  for name in ("vocab.json", "merges.txt"):
    assert (tmp_path / "ported" / name).read_bytes() == (folder / name).read_bytes()


# ------------------------------------------------------------------------------------------------------------ DINO


@functools.cache
def dino_descriptor_fn(fields: tuple):
  """Jitted Splice descriptors of the ported DINO ViT, shared by fixtures of one architecture."""
  model = dino_lib.dino_vit(**dict(fields))
  return jax.jit(functools.partial(
      dino_lib.dino_descriptors, model, short_side=DINO_SHORT_SIDE, key_layer=KEY_LAYER, cls_layer=CLS_LAYER
  ))


def dino_images():
  return np.random.default_rng(4).uniform(size=(2, 60, 50, 3)).astype(np.float32)


def reference_dino_descriptors(model):
  """Splice's extraction on torchvision's Resize(40) of the same images (bilinear, antialiased), ImageNet mean/std."""
  resized = F.interpolate(to_torch_images(dino_images()), size=(48, 40), mode="bilinear", antialias=True)
  normalised = (resized - torch.tensor(dino_lib.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
      dino_lib.IMAGENET_STD).view(1, 3, 1, 1)
  with torch.no_grad():
    similarity, cls = dino_reference.splice_descriptors(model, normalised, KEY_LAYER, CLS_LAYER)
  return similarity.numpy(), cls.numpy()


def assert_dino_matches(dst, similarity_expected, cls_expected):
  architecture, variables = ported.load(str(dst), kind="dino")
  descriptors = dino_descriptor_fn(tuple(sorted(architecture["fields"].items())))
  got = descriptors(variables["params"], dino_images())
  assert got["self_similarity"].shape == (2, 1 + 6 * 5, 1 + 6 * 5)
  np.testing.assert_allclose(got["self_similarity"], similarity_expected, rtol=0, atol=TOLERANCE)
  np.testing.assert_allclose(got["cls"], cls_expected, rtol=0, atol=TOLERANCE)


def dino_model(seed):
  torch.manual_seed(seed)
  model = dino_reference.VisionTransformer(patch_size=8, width=128, depth=3, mlp_dim=256, image_size=32).eval()
  randomise_layer_norms(model, seed=seed + 1)
  return model


@pytest.fixture(scope="module")
def dino_models():
  """(teacher, student): two tiny DINO ViTs in facebookresearch's key layout."""
  return dino_model(5), dino_model(7)


def test_dino_backbone_file_matches_splice_reference(dino_models, tmp_path):
  teacher, _ = dino_models
  torch.save(teacher.state_dict(), tmp_path / "dino_toy_pretrain.pth")
  run_port("dino", tmp_path / "dino_toy_pretrain.pth", tmp_path / "ported")
  assert_dino_matches(tmp_path / "ported", *reference_dino_descriptors(teacher))
  architecture, _ = ported.load(str(tmp_path / "ported"))
  assert architecture["fields"] == dict(DINO_FIELDS, pretrained_grid=4)


@pytest.mark.parametrize("which", [None, "student"])
def test_dino_full_checkpoint_matches_splice_reference(dino_models, tmp_path, which):
  """teacher: `backbone.` keys, student: `module.backbone.` keys; both with DINOHead keys and an args Namespace."""
  teacher, student = dino_models
  head = {"head.mlp.0.weight": torch.randn(32, 128), "head.last_layer.weight_g": torch.ones(64, 1)}
  checkpoint = {
      "teacher": {**{"backbone." + k: v for k, v in teacher.state_dict().items()}, **head},
      "student": {**{"module.backbone." + k: v for k, v in student.state_dict().items()},
                  **{"module." + k: v for k, v in head.items()}},
      "args": argparse.Namespace(arch="vit_toy", patch_size=8),
      "epoch": 1,
  }
  torch.save(checkpoint, tmp_path / "checkpoint.pth")
  run_port("dino", tmp_path / "checkpoint.pth", tmp_path / "ported", *(["--which", which] if which else []))
  assert_dino_matches(tmp_path / "ported", *reference_dino_descriptors(student if which else teacher))


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_dino_hf_folder_uses_dino_layer_norm_eps(tmp_path, weights_file):
  """A HF ViT folder saying layer_norm_eps 1e-12 (as the hub DINO configs do) is ported with DINO's 1e-6.

  pytorch_model.bin is the older HF layout (a torch.save state dict), written here from the safetensors file.

  The embeddings are scaled down so that the first LayerNorm sees a small variance and eps matters: the Splice
  reference run with eps 1e-12 differs from the one with 1e-6 by more than 10x the tolerance.
  """
  torch.manual_seed(9)
  config = transformers.ViTConfig(
      hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, image_size=32,
      patch_size=8, layer_norm_eps=1e-12,
  )
  hf_model = transformers.ViTModel(config, add_pooling_layer=False).eval()
  randomise_layer_norms(hf_model, seed=10)
  with torch.no_grad():
    for name, parameter in hf_model.named_parameters():
      if "embeddings" in name:
        parameter.mul_(0.02)
  hf_model.save_pretrained(tmp_path / "hf")
  saved = {key: torch.from_numpy(value) for key, value in load_file(str(tmp_path / "hf" / "model.safetensors")).items()}
  if weights_file == "pytorch_model.bin":
    torch.save(saved, tmp_path / "hf" / weights_file)
    (tmp_path / "hf" / "model.safetensors").unlink()
  with pytest.warns(UserWarning, match="layer_norm_eps 1e-12"):
    run_port("dino", tmp_path / "hf", tmp_path / "ported")

  references = {}
  for eps in (1e-6, 1e-12):
    reference = dino_reference.VisionTransformer(
        patch_size=8, width=64, depth=3, mlp_dim=256, image_size=32, num_heads=4).eval()
    reference.load_state_dict(dino_state_dict_from_hf(saved))
    for module in reference.modules():
      if isinstance(module, torch.nn.LayerNorm):
        module.eps = eps
    references[eps] = reference_dino_descriptors(reference)
  assert np.abs(references[1e-6][0] - references[1e-12][0]).max() > 10 * TOLERANCE
  assert_dino_matches(tmp_path / "ported", *references[1e-6])


def dino_state_dict_from_hf(hf_state):
  """HF ViTModel keys as saved on disk -> DINO keys (docs/weight_formats.md §5.2), fusing query/key/value rows."""
  state = {
      "cls_token": hf_state["embeddings.cls_token"],
      "pos_embed": hf_state["embeddings.position_embeddings"],
      "patch_embed.proj.weight": hf_state["embeddings.patch_embeddings.projection.weight"],
      "patch_embed.proj.bias": hf_state["embeddings.patch_embeddings.projection.bias"],
      "norm.weight": hf_state["layernorm.weight"],
      "norm.bias": hf_state["layernorm.bias"],
  }
  for index in range(3):
    layer = f"encoder.layer.{index}."
    attention = layer + "attention.attention."
    for suffix in ("weight", "bias"):
      state[f"blocks.{index}.attn.qkv.{suffix}"] = torch.cat(
          [hf_state[f"{attention}{name}.{suffix}"] for name in ("query", "key", "value")])
      for dino_name, hf_name in (("norm1", "layernorm_before"), ("norm2", "layernorm_after"),
                                 ("attn.proj", "attention.output.dense"), ("mlp.fc1", "intermediate.dense"),
                                 ("mlp.fc2", "output.dense")):
        state[f"blocks.{index}.{dino_name}.{suffix}"] = hf_state[f"{layer}{hf_name}.{suffix}"]
  return state


# ----------------------------------------------------------------------------------- full-size key tables, bad input


def transformer_shapes(prefix, width, layers, qkv, names):
  """Stored shapes of `layers` pre-LN blocks; `qkv` = (weight, bias) key of the fused projection."""
  shapes = {}
  for index in range(layers):
    layer = f"{prefix}{index}."
    shapes[layer + qkv[0]] = (3 * width, width)
    shapes[layer + qkv[1]] = (3 * width,)
    for name in names["norms"]:
      shapes[layer + name + ".weight"] = shapes[layer + name + ".bias"] = (width,)
    shapes[layer + names["out"] + ".weight"], shapes[layer + names["out"] + ".bias"] = (width, width), (width,)
    shapes[layer + names["fc1"] + ".weight"], shapes[layer + names["fc1"] + ".bias"] = (4 * width, width), (4 * width,)
    shapes[layer + names["fc2"] + ".weight"], shapes[layer + names["fc2"] + ".bias"] = (width, 4 * width), (width,)
  return shapes


def openai_clip_vit_b32_shapes():
  """docs/weight_formats.md §4.2: the published ViT-B/32 keys and shapes, plus the scalars the loader drops."""
  names = dict(norms=("ln_1", "ln_2"), out="attn.out_proj", fc1="mlp.c_fc", fc2="mlp.c_proj")
  qkv = ("attn.in_proj_weight", "attn.in_proj_bias")
  shapes = {
      "visual.conv1.weight": (768, 3, 32, 32), "visual.class_embedding": (768,),
      "visual.positional_embedding": (50, 768), "visual.ln_pre.weight": (768,), "visual.ln_pre.bias": (768,),
      **transformer_shapes("visual.transformer.resblocks.", 768, 12, qkv, names),
      "visual.ln_post.weight": (768,), "visual.ln_post.bias": (768,), "visual.proj": (768, 512),
      "token_embedding.weight": (49408, 512), "positional_embedding": (77, 512),
      **transformer_shapes("transformer.resblocks.", 512, 12, qkv, names),
      "ln_final.weight": (512,), "ln_final.bias": (512,), "text_projection": (512, 512), "logit_scale": (),
      "input_resolution": (), "context_length": (), "vocab_size": (),
  }
  return shapes


def dino_vitb16_shapes():
  """docs/weight_formats.md §5.2 with P = 16."""
  names = dict(norms=("norm1", "norm2"), out="attn.proj", fc1="mlp.fc1", fc2="mlp.fc2")
  qkv = ("attn.qkv.weight", "attn.qkv.bias")
  return {
      "cls_token": (1, 1, 768), "pos_embed": (1, 197, 768), "patch_embed.proj.weight": (768, 3, 16, 16),
      "patch_embed.proj.bias": (768,), **transformer_shapes("blocks.", 768, 12, qkv, names),
      "norm.weight": (768,), "norm.bias": (768,),
  }


def zeros(shapes):
  state_dict = {key: np.zeros(shape, np.float16) for key, shape in shapes.items()}
  state_dict.update({key: np.array(value) for key, value in (("input_resolution", 224), ("context_length", 77),
                                                             ("vocab_size", 49408)) if key in shapes})
  return state_dict


def tree_shapes(tree):
  return jax.tree.map(lambda leaf: tuple(leaf.shape), tree)


@pytest.mark.smoke
def test_full_size_clip_vit_b32_tree_matches_module_init():
  fields, params = clip_port.convert_openai_clip(zeros(openai_clip_vit_b32_shapes()))
  assert fields == dict(embed_dim=512, image_size=224, vision_patch_size=32, vision_width=768, vision_depth=12,
                        vision_heads=12, vocab_size=49408, context_length=77, text_width=512, text_depth=12,
                        text_heads=8)
  model = clip_lib.CLIP(**fields)
  expected = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 224, 224, 3), np.float32),
                            jax.ShapeDtypeStruct((1, 77), np.int32))["params"]
  assert tree_shapes(params) == tree_shapes(expected)
  # 12 stored arrays per block become 16 (in_proj weight and bias split three ways); 4 scalars are dropped.
  assert len(jax.tree.leaves(params)) == len(openai_clip_vit_b32_shapes()) + 4 * 24 - 4
  assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(params))


@pytest.mark.smoke
def test_full_size_dino_vitb16_tree_matches_module_init():
  fields, params = dino_port.convert_dino_vit(zeros(dino_vitb16_shapes()))
  assert fields == dict(patch_size=16, width=768, depth=12, num_heads=12, mlp_dim=3072, pretrained_grid=14)
  images = jax.ShapeDtypeStruct((1, 224, 224, 3), np.float32)
  expected = jax.eval_shape(dino_lib.dino_vit(**fields).init, jax.random.key(0), images)
  assert tree_shapes(params) == tree_shapes(expected["params"])
  assert len(jax.tree.leaves(params)) == len(dino_vitb16_shapes()) + 4 * 12


def port_expecting_error(capsys, argv, dst):
  assert port_main([str(arg) for arg in argv]) == 1
  assert not dst.exists()
  assert not list(dst.parent.glob(f".{dst.name}*"))
  return capsys.readouterr().err


def test_clip_renamed_key_names_both_keys(openai_clip, tmp_path, capsys):
  state_dict = openai_clip.state_dict()
  state_dict["visual.ln_post.gamma"] = state_dict.pop("visual.ln_post.weight")
  torch.save(state_dict, tmp_path / "clip.pt")
  error = port_expecting_error(capsys, ["clip", tmp_path / "clip.pt", tmp_path / "out"], tmp_path / "out")
  assert "missing keys: ['visual.ln_post.weight']" in error
  assert "unexpected keys: ['visual.ln_post.gamma']" in error
  assert str(tmp_path / "clip.pt") in error


def test_clip_changed_shape_names_key_and_shapes(openai_clip, tmp_path, capsys):
  state_dict = openai_clip.state_dict()
  state_dict["transformer.resblocks.1.mlp.c_fc.weight"] = torch.zeros(255, 64)
  torch.save(state_dict, tmp_path / "clip.pt")
  error = port_expecting_error(capsys, ["clip", tmp_path / "clip.pt", tmp_path / "out"], tmp_path / "out")
  assert "key 'transformer.resblocks.1.mlp.c_fc.weight': expected shape (256, 64), found (255, 64)" in error


def test_dino_renamed_key_and_changed_shape(dino_models, tmp_path, capsys):
  teacher, _ = dino_models
  renamed = teacher.state_dict()
  renamed["blocks.1.norm_2.bias"] = renamed.pop("blocks.1.norm2.bias")
  torch.save(renamed, tmp_path / "renamed.pth")
  error = port_expecting_error(capsys, ["dino", tmp_path / "renamed.pth", tmp_path / "out"], tmp_path / "out")
  assert "missing keys: ['blocks.1.norm2.bias']; unexpected keys: ['blocks.1.norm_2.bias']" in error

  reshaped = teacher.state_dict()
  reshaped["blocks.2.attn.qkv.weight"] = torch.zeros(381, 128)
  torch.save(reshaped, tmp_path / "reshaped.pth")
  error = port_expecting_error(capsys, ["dino", tmp_path / "reshaped.pth", tmp_path / "out"], tmp_path / "out")
  assert "key 'blocks.2.attn.qkv.weight': expected shape (384, 128), found (381, 128)" in error


def test_dino_full_checkpoint_without_chosen_network(dino_models, tmp_path, capsys):
  teacher, _ = dino_models
  torch.save({"teacher": teacher.state_dict(), "epoch": 1}, tmp_path / "checkpoint.pth")
  error = port_expecting_error(capsys, ["dino", tmp_path / "checkpoint.pth", tmp_path / "out", "--which", "student"],
                               tmp_path / "out")
  assert "without 'student'" in error
