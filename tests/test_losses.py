"""Losses and schedules against direct numpy transcriptions of docs/model.md §10 and §12."""

import jax.numpy as jnp
import numpy as np
import pytest

from vidstyleode_jax import losses
from vidstyleode_jax import schedules

RNG = np.random.default_rng(0)
PROJECTION = RNG.standard_normal((4 * 4 * 3, 8)).astype(np.float32)


def clip_image(images):
  """A stand-in image encoder: a fixed linear map of the flattened pixels."""
  return jnp.reshape(images, (images.shape[0], -1)) @ PROJECTION


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_latent_hinge():
  content = RNG.standard_normal((2, 5, 8)).astype(np.float32)
  w_rec = content[:, None] + 0.3 * RNG.standard_normal((2, 3, 5, 8)).astype(np.float32)
  w_edit = content[:, None] + 0.05 * RNG.standard_normal((2, 3, 5, 8)).astype(np.float32)
  eps = 0.02
  expected = max(np.mean((w_rec - content[:, None]) ** 2) - eps / 2, 0) + max(
      np.mean((w_edit - content[:, None]) ** 2) - eps, 0)
  assert expected > 0
  np.testing.assert_allclose(losses.latent_hinge(content, w_rec, w_edit, eps), expected, rtol=1e-6)


def test_consistency_counts_every_ordered_pair():
  videos = RNG.uniform(-1, 1, (2, 4, 4, 4, 3)).astype(np.float32)
  positions = np.array([0, 2, 3])
  emb = unit(np.asarray(clip_image(jnp.asarray(videos[:, positions].reshape(-1, 4, 4, 3)))).reshape(2, 3, -1))
  pairs = [1 - emb[b, i] @ emb[b, j] for b in range(2) for i in range(3) for j in range(3) if i != j]
  expected = np.sum(pairs) / (2 * 3)  # Σ over the k-1 shifts of a mean over (video, frame)
  np.testing.assert_allclose(losses.consistency_clip_loss(clip_image, videos, positions), expected, rtol=1e-5)


def test_directional_loss_and_its_degenerate_branch():
  real = RNG.uniform(-1, 1, (3, 4, 4, 4, 3)).astype(np.float32)
  edited = RNG.uniform(-1, 1, (3, 4, 4, 4, 3)).astype(np.float32)
  text = RNG.standard_normal((3, 8)).astype(np.float32)
  positions = np.array([1, 3])

  def video_embedding(videos):
    emb = np.asarray(clip_image(jnp.asarray(videos[:, positions].reshape(-1, 4, 4, 3)))).reshape(3, 2, -1)
    return unit(emb).mean(axis=1)

  image_dir = video_embedding(real) - video_embedding(edited)
  text_dir = unit(text) - unit(np.roll(text, 1, axis=0))
  expected = np.mean(1 - np.sum(unit(text_dir) * unit(image_dir), axis=-1))
  got = losses.directional_clip_loss(clip_image, real, edited, text, np.roll(text, 1, axis=0), positions)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  degenerate = losses.directional_clip_loss(clip_image, real, edited, text, text, positions)
  np.testing.assert_allclose(degenerate, np.linalg.norm(image_dir), rtol=1e-5)


def test_structure_and_appearance_sum_over_images():
  gen, real = RNG.standard_normal((2, 4, 5, 5)).astype(np.float32)
  np.testing.assert_allclose(losses.structure_loss(gen, real), np.sum(np.mean((gen - real) ** 2, axis=(1, 2))),
                             rtol=1e-6)
  gen_cls = RNG.standard_normal((6, 7)).astype(np.float32)  # 2 videos x 3 frames, batch-major
  ref_cls = RNG.standard_normal((2, 7)).astype(np.float32)
  expected = sum(np.mean((gen_cls[i] - ref_cls[i // 3]) ** 2) for i in range(6))
  np.testing.assert_allclose(losses.appearance_loss(gen_cls, ref_cls, 3), expected, rtol=1e-6)


@pytest.mark.parametrize("step, expected", [(0, 0.0), (4999, 0.0), (5000, 0.01), (102_500, 1.255),
                                            (200_000, 2.5), (900_000, 2.5)])
def test_ramp_matches_the_lambda_scheduler(step, expected):
  ramp = schedules.ramp(warmup=5000, start=0.01, end=2.5, plateau=200_000)
  np.testing.assert_allclose(schedules.weight_at(ramp, step), expected, rtol=1e-6)
  np.testing.assert_allclose(schedules.weight_at(0.7, step), 0.7, rtol=1e-7)
