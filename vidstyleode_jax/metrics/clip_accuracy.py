"""CLIP manipulation accuracy: CLIP as a zero-shot classifier between an edit's target text and the video's own
description (the paper's Acc.), and the mean CLIP similarity of the edited frames to the target text.

A video counts as correct when its frames are, on average, closer (cosine similarity of CLIP embeddings) to the
target text than to the source description; with two classes this is the zero-shot classifier's decision whatever
the logit scale. Embeddings are the raw CLIP outputs; they are normalised here.
"""

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def _normalise(x: jax.Array) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


@jax.jit
def manipulation_accuracy(frame_embeddings: jax.Array, target_embeddings: jax.Array,
                          source_embeddings: jax.Array) -> dict[str, jax.Array]:
  """Zero-shot classification of edited videos between target and source text.

  Args:
    frame_embeddings: [videos, frames, dim] CLIP image embeddings of the edited frames.
    target_embeddings: [videos, dim] CLIP text embeddings of each video's target text.
    source_embeddings: [videos, dim] CLIP text embeddings of each video's own description.

  Returns:
    {"correct": [videos] bool, "accuracy": scalar fraction correct, "target_similarity": [videos] mean cosine
    similarity of the frames to the target text, "source_similarity": [videos] the same for the description}.
  """
  frames = _normalise(frame_embeddings)
  target = jnp.einsum("vfd,vd->v", frames, _normalise(target_embeddings), precision=_HIGHEST) / frames.shape[1]
  source = jnp.einsum("vfd,vd->v", frames, _normalise(source_embeddings), precision=_HIGHEST) / frames.shape[1]
  correct = target > source
  return {"correct": correct, "accuracy": jnp.mean(correct.astype(jnp.float32)), "target_similarity": target,
          "source_similarity": source}
