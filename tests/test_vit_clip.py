"""CLIP and ViT/DINO parity with Hugging Face's PyTorch CLIPModel and ViTModel (tiny random models)."""

import functools

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.numpy import load_file

from port_weights import hf_vision
from vidstyleode_jax.models import clip
from vidstyleode_jax.models import dino
from vidstyleode_jax.models import vit

TOLERANCE = 1e-4
VOCAB_SIZE = 99
EOT = VOCAB_SIZE - 1
CONTEXT = 77


@pytest.fixture(autouse=True)
def float32_matmuls():
  """Parity concerns the model numerics, not a backend default: GPUs use TF32 otherwise (errors near 2e-3)."""
  with jax.default_matmul_precision("highest"):
    yield


def randomise_layer_norms(model: torch.nn.Module):
  """LayerNorm weights away from (1, 0), so eps and affine mistakes show."""
  generator = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.LayerNorm):
        module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=generator))
        module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=generator))


def saved_state_dict(model, folder):
  """The on-disk (safetensors) keys, which are what the converters read."""
  model.save_pretrained(folder)
  return load_file(str(folder / "model.safetensors"))


def to_torch_images(images):
  return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def token_batch(rng, lengths, pad_id):
  """[len(lengths), CONTEXT] ids: SOT-like body of random ids < EOT, then EOT, then pad_id."""
  ids = np.full((len(lengths), CONTEXT), pad_id, np.int64)
  for row, length in enumerate(lengths):
    ids[row, :length] = rng.integers(0, EOT, size=length)
    ids[row, length] = EOT
  return ids


@pytest.fixture(scope="module", params=[EOT, 2], ids=["eos_first_match", "eos_argmax"])
def clip_pair(request, tmp_path_factory):
  """A tiny HF CLIPModel (both eos_token_id pooling conventions) and the matching Flax CLIP with ported params."""
  torch.manual_seed(0)
  config = transformers.CLIPConfig(
      projection_dim=8,
      text_config=dict(
          vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
          max_position_embeddings=CONTEXT, eos_token_id=request.param, bos_token_id=97, pad_token_id=1,
      ),
      vision_config=dict(
          hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, image_size=32,
          patch_size=8,
      ),
  )
  torch_model = transformers.CLIPModel(config).eval()
  randomise_layer_norms(torch_model)
  params = hf_vision.convert_hf_clip(saved_state_dict(torch_model, tmp_path_factory.mktemp("clip")))
  flax_model = clip.CLIP(
      embed_dim=8, image_size=32, vision_patch_size=8, vision_width=64, vision_depth=2, vision_heads=2,
      vocab_size=VOCAB_SIZE, context_length=CONTEXT, text_width=64, text_depth=2, text_heads=4,
  )
  return torch_model, flax_model, params


@pytest.mark.smoke
def test_clip_params_match_init_tree(clip_pair):
  _, flax_model, params = clip_pair
  init = flax_model.init(jax.random.key(0), np.zeros((1, 32, 32, 3)), np.zeros((1, CONTEXT), np.int32))["params"]
  shapes = lambda tree: jax.tree.map(np.shape, tree)
  assert shapes(params) == shapes(init)


def test_clip_image_embedding_matches_hf(clip_pair):
  torch_model, flax_model, params = clip_pair
  images = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = torch_model.get_image_features(pixel_values=to_torch_images(images)).pooler_output.numpy()
  encode = jax.jit(functools.partial(flax_model.apply, method="encode_image"))
  got = np.asarray(encode({"params": params}, images))
  assert got.shape == (3, 8)
  np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_clip_text_embedding_matches_hf(clip_pair):
  torch_model, flax_model, params = clip_pair
  ids = token_batch(np.random.default_rng(1), lengths=[0, 5, 30, CONTEXT - 1], pad_id=0)
  with torch.no_grad():
    expected = torch_model.get_text_features(input_ids=torch.from_numpy(ids)).pooler_output.numpy()
  encode = jax.jit(functools.partial(flax_model.apply, method="encode_text"))
  got = np.asarray(encode({"params": params}, ids.astype(np.int32)))
  np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_clip_text_embedding_ignores_padding_id(clip_pair):
  """jnp.argmax picks the first EOT, and causal attention hides what follows: 0 and EOT padding agree."""
  _, flax_model, params = clip_pair
  zero_padded = token_batch(np.random.default_rng(2), lengths=[3, 10], pad_id=0)
  eot_padded = token_batch(np.random.default_rng(2), lengths=[3, 10], pad_id=EOT)
  encode = functools.partial(flax_model.apply, {"params": params}, method="encode_text")
  np.testing.assert_array_equal(np.asarray(encode(zero_padded)), np.asarray(encode(eot_padded)))


def dino_torch_position_table(position_embeddings, rows, cols):
  """DINO's own interpolate_pos_encoding call on a torch [1, 1 + g*g, D] table."""
  grid = int(np.sqrt(position_embeddings.shape[1] - 1))
  width = position_embeddings.shape[-1]
  patch_table = position_embeddings[:, 1:].reshape(1, grid, grid, width).permute(0, 3, 1, 2)
  patch_table = F.interpolate(
      patch_table, scale_factor=((rows + 0.1) / grid, (cols + 0.1) / grid), mode="bicubic"
  )
  assert patch_table.shape[-2:] == (rows, cols)
  patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, rows * cols, width)
  return torch.cat([position_embeddings[:, :1], patch_table], dim=1)


def hf_vit(image_size):
  """A tiny HF ViTModel; layer_norm_eps 1e-6 as DINO (the hub configs' 1e-12 is wrong for DINO)."""
  config = transformers.ViTConfig(
      hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, image_size=image_size,
      patch_size=8, layer_norm_eps=1e-6,
  )
  return transformers.ViTModel(config, add_pooling_layer=False).eval()


@pytest.fixture(scope="module")
def vit_pair(tmp_path_factory):
  torch.manual_seed(1)
  torch_model = hf_vit(32)
  randomise_layer_norms(torch_model)
  params = hf_vision.convert_hf_vit(saved_state_dict(torch_model, tmp_path_factory.mktemp("vit")))
  flax_model = dino.dino_vit(patch_size=8, width=64, depth=3, num_heads=4, mlp_dim=256).clone(pretrained_grid=4)
  return torch_model, flax_model, params


def run_hf_vit(torch_model, images, key_layer):
  """HF hidden states [depth + 1, ...], final output, and keys of block key_layer from its own modules."""
  with torch.no_grad():
    output = torch_model(to_torch_images(images), output_hidden_states=True)
    block = torch_model.layers[key_layer]
    keys = block.attention.k_proj(block.layernorm_before(output.hidden_states[key_layer]))
  return np.stack([h.numpy() for h in output.hidden_states]), output.last_hidden_state.numpy(), keys.numpy()


def assert_vit_matches(flax_model, params, images, hidden_states, last_hidden_state, keys, key_layer):
  apply = jax.jit(functools.partial(flax_model.apply, key_layer=key_layer))
  outputs = apply({"params": params}, images)
  np.testing.assert_allclose(outputs["block_outputs"], hidden_states[1:], rtol=0, atol=TOLERANCE)
  np.testing.assert_allclose(outputs["tokens"], hidden_states[-1], rtol=0, atol=TOLERANCE)
  np.testing.assert_allclose(outputs["normed"], last_hidden_state, rtol=0, atol=TOLERANCE)
  np.testing.assert_allclose(outputs["keys"], keys, rtol=0, atol=TOLERANCE)


def test_vit_native_size_matches_hf(vit_pair):
  torch_model, flax_model, params = vit_pair
  images = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
  assert_vit_matches(flax_model, params, images, *run_hf_vit(torch_model, images, key_layer=1), key_layer=1)


def test_dino_position_table_matches_torch_interpolate(vit_pair):
  _, _, params = vit_pair
  table = params["pos_embed"]
  expected = dino_torch_position_table(torch.from_numpy(table[None]), rows=6, cols=5)[0].numpy()
  got = np.asarray(vit.dino_position_table(table, pretrained_grid=4, grid=(6, 5)))
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_vit_non_native_size_matches_dino_interpolation(vit_pair):
  """50x43 pixels: trailing pixels dropped, 6x5 grid, DINO-interpolated table (given to HF at 48x40)."""
  torch_model, flax_model, params = vit_pair
  state = torch_model.state_dict()
  state["embeddings.position_embeddings"] = dino_torch_position_table(
      state["embeddings.position_embeddings"], rows=6, cols=5
  )
  reference = hf_vit((48, 40))
  reference.load_state_dict(state)
  images = np.random.default_rng(4).normal(size=(2, 50, 43, 3)).astype(np.float32)
  hf_outputs = run_hf_vit(reference, images[:, :48, :40], key_layer=2)
  assert_vit_matches(flax_model, params, images, *hf_outputs, key_layer=2)


def test_vit_square_image_with_pretrained_count_skips_interpolation(vit_pair):
  """DINO only skips interpolation for a square image with N patches: 35x35 pixels keep the stored table."""
  _, flax_model, params = vit_pair
  images = np.random.default_rng(5).normal(size=(1, 35, 35, 3)).astype(np.float32)
  np.testing.assert_array_equal(
      np.asarray(flax_model.apply({"params": params}, images)["tokens"]),
      np.asarray(flax_model.apply({"params": params}, images[:, :32, :32])["tokens"]),
  )


def test_vit_without_interpolation_rejects_other_grid(vit_pair):
  _, flax_model, params = vit_pair
  with pytest.raises(ValueError, match="6x5 patch grid"):
    flax_model.clone(pos_interpolation="none").apply({"params": params}, np.zeros((1, 48, 40, 3), np.float32))


def test_vit_rejects_key_layer_outside_depth(vit_pair):
  _, flax_model, params = vit_pair
  with pytest.raises(ValueError, match="key_layer 3"):
    flax_model.apply({"params": params}, np.zeros((1, 32, 32, 3), np.float32), key_layer=3)


def test_key_self_similarity_matches_numpy():
  keys = np.random.default_rng(6).normal(size=(2, 5, 7)).astype(np.float32)
  keys[1, 3] = 0.0
  norms = np.linalg.norm(keys.astype(np.float64), axis=-1)
  expected = np.einsum("bid,bjd->bij", keys.astype(np.float64), keys) / np.maximum(
      norms[:, :, None] * norms[:, None, :], 1e-8
  )
  got = np.asarray(dino.key_self_similarity(keys))
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
  np.testing.assert_allclose(np.diagonal(got[0]), 1.0, atol=1e-6)


def test_dino_descriptors_select_layers(vit_pair):
  """Descriptors equal the self-similarity of the chosen keys and the chosen block's CLS, after preprocessing."""
  _, flax_model, params = vit_pair
  images = np.random.default_rng(7).uniform(size=(2, 40, 30, 3)).astype(np.float32)
  descriptors = dino.dino_descriptors(flax_model, params, images, short_side=32, key_layer=2, cls_layer=1)
  outputs = flax_model.apply({"params": params}, dino.dino_preprocess(images, 32), key_layer=2)
  assert descriptors["self_similarity"].shape == (2, 1 + 5 * 4, 1 + 5 * 4)
  np.testing.assert_allclose(
      descriptors["self_similarity"], dino.key_self_similarity(outputs["keys"]), rtol=0, atol=1e-6
  )
  np.testing.assert_allclose(descriptors["cls"], outputs["block_outputs"][1][:, 0], rtol=0, atol=1e-6)


def torch_normalise(images, mean, std):
  return (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_clip_preprocess_matches_torch_pipeline():
  """20x14 in [-1, 1] -> [0, 1] -> 11x8 (bicubic, antialias) -> crop 8 at top round(1.5) = 2 -> CLIP mean/std."""
  images = np.random.default_rng(8).uniform(-1, 1, size=(2, 20, 14, 3)).astype(np.float32)
  resized = F.interpolate(
      (to_torch_images(images) + 1) / 2, size=(11, 8), mode="bicubic", align_corners=False, antialias=True
  )
  expected = torch_normalise(resized[:, :, 2:10, 0:8], clip.CLIP_MEAN, clip.CLIP_STD).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(clip.clip_preprocess(images, 8), expected, rtol=0, atol=1e-5)


def test_dino_preprocess_matches_torch_pipeline():
  """16x12 in [0, 1] -> short side 10: 13x10 (bilinear, antialias), no crop -> ImageNet mean/std."""
  images = np.random.default_rng(9).uniform(size=(2, 16, 12, 3)).astype(np.float32)
  resized = F.interpolate(to_torch_images(images), size=(13, 10), mode="bilinear", align_corners=False, antialias=True)
  expected = torch_normalise(resized, dino.IMAGENET_MEAN, dino.IMAGENET_STD).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(dino.dino_preprocess(images, 10), expected, rtol=0, atol=1e-5)


def test_convert_hf_vit_reports_unknown_keys(vit_pair, tmp_path):
  torch_model, _, _ = vit_pair
  state = saved_state_dict(torch_model, tmp_path)
  state["encoder.layer.0.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(KeyError, match="extra"):
    hf_vision.convert_hf_vit(state)
