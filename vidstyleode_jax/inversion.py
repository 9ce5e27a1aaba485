"""Real frames -> W+ codes with a ported pSp encoder (`python -m port_weights psp SRC DST`), batched and jitted.

Pre-processing follows pSp's test transform: resize to input_size x input_size (bilinear, antialiased; the aspect
ratio is not kept, as `transforms.Resize((256, 256))` does not keep it), scale to [-1, 1]. Frames go through the
encoder in fixed-size batches (the last one padded), so one compiled program serves every video and a frame's code
does not depend on which other frames share its batch.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vidstyleode_jax import backends
from vidstyleode_jax import image_ops
from vidstyleode_jax import ported

ENCODER_COLLECTIONS = ("params", "batch_stats", "latent_avg")


class Inverter:
  """Calls a pSp encoder on uint8 frames of any size: `inverter(frames) -> W+`."""

  def __init__(self, encoder, variables, batch_size=8):
    """encoder: a models.psp.PSPEncoder; variables: its collections (params, batch_stats, latent_avg)."""
    self.encoder = encoder
    self.variables = jax.tree.map(jnp.asarray, {k: v for k, v in variables.items() if k in ENCODER_COLLECTIONS})
    self.batch_size = batch_size
    self._encode = jax.jit(self._encode_batch, compiler_options=backends.compiler_options())

  @classmethod
  def from_ported(cls, path, batch_size=8):
    """Loads a ported pSp folder; raises UserError naming the folder if it is not one."""
    architecture, variables = ported.load(path, kind="psp")
    return cls(ported.build_module(architecture), variables, batch_size)

  @property
  def n_styles(self):
    return self.encoder.n_styles

  @property
  def style_dim(self):
    return self.encoder.style_dim

  def _encode_batch(self, variables, frames):
    size = self.encoder.input_size
    images = frames.astype(jnp.float32) / 127.5 - 1.0
    images = image_ops.resize_antialiased(images, size, size, "bilinear")
    return self.encoder.apply(variables, images)

  def __call__(self, frames):
    """frames: [n, height, width, 3] uint8 -> W+ [n, n_styles, style_dim] float32 numpy."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"Inverter expects uint8 frames [n, height, width, 3], got {frames.dtype} {frames.shape}")
    codes = []
    for start in range(0, len(frames), self.batch_size):
      batch = frames[start:start + self.batch_size]
      padded = np.concatenate([batch, np.zeros((self.batch_size - len(batch),) + batch.shape[1:], np.uint8)])
      codes.append(np.asarray(self._encode(self.variables, padded))[:len(batch)])
    if not codes:
      return np.zeros((0, self.n_styles, self.style_dim), np.float32)
    return np.concatenate(codes).astype(np.float32)
