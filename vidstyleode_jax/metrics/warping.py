"""Warping error (Lai et al. 2018, "Learning Blind Video Temporal Consistency"), batched and jitted.

For consecutive frames O_t, O_t+1 with forward flow F (t -> t+1) and backward flow B (t+1 -> t):
  * warp(O_t+1, F)(p) = O_t+1(p + F(p)), bilinear with border clamping (FlowNet2's Resample2d);
  * occluded where |F + B_w|^2 > 0.01 (|F|^2 + |B_w|^2) + 0.5 with B_w(p) = B(p + F(p)) (forward-backward
    inconsistency), or where |dF/dx|^2 + |dF/dy|^2 > 0.01 |F|^2 + 0.002 (motion boundary; forward differences,
    zero on the last row / column);
  * E_t = sum_p M(p) |O_t(p) - warp(O_t+1, F)(p)|^2 / (channels sum_p M(p)) with M = 1 - occluded, 0 when every
    pixel is occluded;
  * a video's error is the mean of E_t over its frame pairs. Images are in [0, 1].
The flows come from a flow network on the same frames (RAFT here; the paper used FlowFormer, docs/metrics_protocol.md).
"""

from typing import Callable

import jax
import jax.numpy as jnp

from vidstyleode_jax import image_ops

FlowFn = Callable[[jax.Array, jax.Array], jax.Array]


def warp(images: jax.Array, flow: jax.Array) -> jax.Array:
  """images: [batch, h, w, c], flow: [batch, h, w, 2] (x, y) -> images sampled at p + flow(p), [batch, h, w, c]."""
  h, w = images.shape[1:3]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype), indexing="ij")
  return image_ops.bilinear_sample(images, xs + flow[..., 0], ys + flow[..., 1], "border")


def _squared_norm(flow: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(flow), axis=-1)


def occlusion_mask(forward_flow: jax.Array, backward_flow: jax.Array) -> jax.Array:
  """forward_flow (t -> t+1), backward_flow (t+1 -> t): [batch, h, w, 2] -> occluded [batch, h, w] bool."""
  backward_warped = warp(backward_flow, forward_flow)
  inconsistent = _squared_norm(forward_flow + backward_warped) > (
      0.01 * (_squared_norm(forward_flow) + _squared_norm(backward_warped)) + 0.5)
  d_dx = jnp.pad(forward_flow[:, :, :-1] - forward_flow[:, :, 1:], ((0, 0), (0, 0), (0, 1), (0, 0)))
  d_dy = jnp.pad(forward_flow[:, :-1] - forward_flow[:, 1:], ((0, 0), (0, 1), (0, 0), (0, 0)))
  boundary = _squared_norm(d_dx) + _squared_norm(d_dy) > 0.01 * _squared_norm(forward_flow) + 0.002
  return inconsistent | boundary


@jax.jit
def warping_error(frames: jax.Array, forward_flows: jax.Array, backward_flows: jax.Array) -> jax.Array:
  """Per-video warping error.

  Args:
    frames: [batch, time, h, w, channels] in [0, 1].
    forward_flows: [batch, time - 1, h, w, 2], frame t -> t + 1.
    backward_flows: [batch, time - 1, h, w, 2], frame t + 1 -> t.

  Returns:
    [batch] float32: the mean over frame pairs of the masked mean squared error.
  """
  batch, time, h, w, channels = frames.shape
  pairs = lambda x: x.reshape((batch * (time - 1),) + x.shape[2:])
  current, following = pairs(frames[:, :-1]), pairs(frames[:, 1:])
  forward, backward = pairs(forward_flows), pairs(backward_flows)
  visible = 1.0 - occlusion_mask(forward, backward).astype(frames.dtype)
  squared = jnp.sum(jnp.square(current - warp(following, forward)), axis=-1)
  count = jnp.sum(visible, axis=(1, 2))
  error = jnp.where(count > 0, jnp.sum(visible * squared, axis=(1, 2)) / (channels * jnp.maximum(count, 1)), 0.0)
  return error.reshape(batch, time - 1).mean(axis=1)


def frame_pair_flows(flow_fn: FlowFn, frames: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Forward and backward flows between consecutive frames, all pairs of all videos in one batch.

  Args:
    flow_fn: (image1, image2) -> flow [n, h, w, 2] from image1 to image2, images [n, h, w, 3] in [-1, 1]
      (e.g. a ported RAFT's apply with its variables bound).
    frames: [batch, time, h, w, 3] in [0, 1].

  Returns:
    (forward, backward) flows, each [batch, time - 1, h, w, 2].
  """
  batch, time = frames.shape[:2]
  pairs = lambda x: 2.0 * x.reshape((batch * (time - 1),) + x.shape[2:]) - 1.0
  current, following = pairs(frames[:, :-1]), pairs(frames[:, 1:])
  flows = flow_fn(jnp.concatenate([current, following]), jnp.concatenate([following, current]))
  forward, backward = jnp.split(flows, 2)
  return (forward.reshape((batch, time - 1) + forward.shape[1:]),
          backward.reshape((batch, time - 1) + backward.shape[1:]))
