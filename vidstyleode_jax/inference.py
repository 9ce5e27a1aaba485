"""Building blocks shared by the train step, evaluation, sample videos and the applications.

Everything here is a pure function of (trainable params, frozen variables, arrays); `Networks` bundles the
trainable model, the frozen networks and the config so that call sites stay short.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from vidstyleode_jax import image_ops
from vidstyleode_jax.models import frozen as frozen_lib
from vidstyleode_jax.models import vidstyleode


@dataclasses.dataclass(frozen=True)
class Networks:
  model: vidstyleode.VidStyleODE
  frozen: frozen_lib.FrozenNetworks
  config: ml_collections.ConfigDict

  @classmethod
  def from_config(cls, config):
    return cls(vidstyleode.build(config), frozen_lib.build(config), config)


CONTENT_CODES = ("mean", "first", "random")


def content_code(config, wplus, key=None):
  """The content code z_C of each video from the W+ inversions of its frames (docs/model.md §5.1, §21.4).

  config.model.content picks it (paper supp. Table 6): "mean" over the frames, the "first" frame's, or one "random"
  frame's per video, drawn with `key` (training passes its step key; without one, the run's seed draws it).

  Args:
    config: the run config.
    wplus: [batch, T, n_latent, style_dim] inversions of the frames, in time order.
    key: PRNG key for "random".

  Returns:
    z_C: [batch, n_latent, style_dim].
  """
  kind = config.model.content
  if kind == "mean":
    return jnp.mean(wplus, axis=1)
  if kind == "first":
    return wplus[:, 0]
  if kind == "random":
    key = jax.random.key(config.seed) if key is None else key
    frame = jax.random.randint(key, (wplus.shape[0],), 0, wplus.shape[1])
    return jnp.take_along_axis(wplus, frame[:, None, None, None], axis=1)[:, 0]
  raise ValueError(f"model.content={kind!r} must be one of {CONTENT_CODES}")


def style_token(nets, frozen_vars, content):
  """CLIP image embedding of the reference frame G(z_C): -> (style [batch, embed], reference [batch, H_G, W_G, 3])."""
  reference = jax.lax.stop_gradient(nets.frozen.render(frozen_vars, content))
  return jax.lax.stop_gradient(nets.frozen.clip_image(frozen_vars, reference)), reference


def text_direction(nets, frozen_vars, source_tokens, target_tokens, strength):
  """strength * (CLIP_text(target) - CLIP_text(source)), raw embeddings: [batch, embed]."""
  source = nets.frozen.clip_text(frozen_vars, source_tokens)
  target = nets.frozen.clip_text(frozen_vars, target_tokens)
  return strength * (target - source)


def dynamics_input(nets, frames01):
  """frames01: [batch, T, H, W, 3] -> the same frames resized (PyTorch bicubic) to the dynamics resolution."""
  d = nets.config.dynamics
  batch, time = frames01.shape[:2]
  resized = image_ops.resize_bicubic_torch(frames01.reshape((batch * time,) + frames01.shape[2:]), d.height, d.width)
  return resized.reshape((batch, time) + resized.shape[1:])


def render_frames(nets, frozen_vars, w):
  """w: [..., n_latent, style_dim] -> (generator frames [..., H_G, W_G, 3], frames at the data size [..., H, W, 3])."""
  lead = w.shape[:-2]
  images = nets.frozen.render(frozen_vars, w.reshape((-1,) + w.shape[-2:]))
  data = nets.config.data
  resized = image_ops.resize_bicubic_torch(images, data.height, data.width)
  return images.reshape(lead + images.shape[1:]), resized.reshape(lead + resized.shape[1:])


def reconstruct(nets, params, frozen_vars, frames01, wplus, times, mask, query_times):
  """Encodes the observed frames and decodes W+ at query_times.

  Returns (w [batch, N, ...], frames [batch, N, H, W, 3]).
  """
  content = content_code(nets.config, wplus)
  style, _ = style_token(nets, frozen_vars, content)
  model = nets.model
  z0 = model.apply(params, dynamics_input(nets, frames01), times, mask, method=model.encode)
  z_t, _ = model.apply(params, z0, query_times, method=model.solve)
  w = model.apply(params, z_t, content, style, method=model.latents)
  return w, render_frames(nets, frozen_vars, w)[1]
