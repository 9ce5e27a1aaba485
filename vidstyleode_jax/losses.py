"""VidStyleODE losses (docs/model.md §10), as pure functions of arrays and frozen feature extractors.

Layouts are batch-major: videos [batch, frames, H, W, 3]. The DINO losses take precomputed descriptors (so one
DINO pass serves several losses); the CLIP losses take the image encoder as a function
clip_image(images in [-1, 1], [n, H, W, 3]) -> [n, embed], so that they know nothing about parameters.
"""

import jax
import jax.numpy as jnp


def mse(a, b):
  return jnp.mean(jnp.square(a - b))


def _normalize(x, eps):
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + eps)


def latent_hinge(content, w_rec, w_edit, eps):
  """max(MSE(z_C, w_rec) - eps/2, 0) + max(MSE(z_C, w_edit) - eps, 0); content is broadcast over frames."""
  content = content[:, None]
  return jnp.maximum(mse(content, w_rec) - eps / 2, 0.0) + jnp.maximum(mse(content, w_edit) - eps, 0.0)


def structure_loss(generated_similarity, real_similarity):
  """Σ over images of MSE between DINO key self-similarities [n, tokens, tokens] (Splice structure loss).

  The real side is the target and carries no gradient.
  """
  diff = generated_similarity - jax.lax.stop_gradient(real_similarity)
  return jnp.sum(jnp.mean(jnp.square(diff), axis=(1, 2)))


def appearance_loss(generated_cls, reference_cls, frames_per_video):
  """Σ over images of MSE between the DINO CLS of each generated frame and that of its video's reference G(z_C).

  generated_cls: [batch * frames_per_video, width] batch-major; reference_cls: [batch, width] (no gradient).
  """
  reference_cls = jnp.repeat(jax.lax.stop_gradient(reference_cls), frames_per_video, axis=0)
  return jnp.sum(jnp.mean(jnp.square(generated_cls - reference_cls), axis=-1))


def perceptual_loss(generated_features, real_features):
  """Σ over layers of the MSE between VGG feature maps of the generated and the real frames (docs/model.md §21.5).

  generated_features, real_features: lists of [n, h_l, w_l, c_l], one per layer; the real side has no gradient.
  """
  return sum(mse(g, jax.lax.stop_gradient(r)) for g, r in zip(generated_features, real_features))


def directional_clip_loss(clip_image, real_m11, edited_m11, text, text_rolled, frame_positions):
  """CLIP directional video loss: the image-space edit direction aligns with the text direction.

  real_m11, edited_m11: [batch, frames, H, W, 3] in [-1, 1]; text, text_rolled: [batch, embed] raw CLIP text
  embeddings of the own and the target description; frame_positions: [k] frames used for both videos.
  When every text direction is zero (all targets equal their sources) the loss falls back to ‖ΔV‖_F.
  """
  batch, k = real_m11.shape[0], frame_positions.shape[0]

  def video_embedding(videos):
    frames = videos[:, frame_positions].reshape((batch * k,) + videos.shape[2:])
    return jnp.mean(_normalize(clip_image(frames), 0.0).reshape(batch, k, -1), axis=1)

  text_dir = _normalize(text, 0.0) - _normalize(text_rolled, 0.0)
  image_dir = video_embedding(real_m11) - video_embedding(edited_m11)
  cosine = jnp.sum(_normalize(text_dir, 1e-9) * _normalize(image_dir, 1e-9), axis=-1)
  return jnp.where(jnp.all(text_dir == 0), jnp.linalg.norm(image_dir), jnp.mean(1.0 - cosine))


def consistency_clip_loss(clip_image, videos_m11, frame_positions):
  """Mean (1 - cos) between CLIP embeddings of every ordered pair of the chosen frames, averaged over videos.

  videos_m11: [batch, frames, H, W, 3] in [-1, 1]; frame_positions: [k].
  """
  batch, k = videos_m11.shape[0], frame_positions.shape[0]
  frames = videos_m11[:, frame_positions].reshape((batch * k,) + videos_m11.shape[2:])
  emb = _normalize(clip_image(frames), 0.0).reshape(batch, k, -1)
  total = 0.0
  for shift in range(1, k):
    total += jnp.mean(1.0 - jnp.sum(emb * jnp.roll(emb, shift, axis=1), axis=-1))
  return total
