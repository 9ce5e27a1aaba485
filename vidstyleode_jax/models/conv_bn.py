"""The TensorFlow-style unit of the Inception-v3 and I3D graphs: conv without bias, BatchNorm, ReLU, channel-last.

Both graphs come from TensorFlow (the 2015-12-05 Inception graph and DeepMind's Sonnet I3D). Their BatchNorm has a
learned offset but no scale and epsilon 1e-3, and runs on the stored statistics. Inference only; the conv runs at
full float32 precision (Precision.HIGHEST) on every backend, so that metric features do not depend on the device.

Variables of one unit: params/{kernel [*window, in, out], bias [out]} (the BatchNorm offset) and
batch_stats/{mean, var} [out].
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

BATCH_NORM_EPS = 1e-3
_DIMENSION_NUMBERS = {2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


class ConvBN(nn.Module):
  """conv(x) -> (y - mean) / sqrt(var + 1e-3) + bias -> ReLU, in 2-D or 3-D.

  Attributes:
    features: output channels.
    kernel_size: the window, e.g. (3, 3) or (7, 7, 7).
    strides: one stride per window axis.
    padding: "SAME" (TensorFlow's, extra padding at the end), "VALID", or one (low, high) pair per window axis.
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] | None = None
  padding: str | Sequence[tuple[int, int]] = "VALID"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, *spatial, in] -> [batch, *spatial', features]."""
    window = tuple(self.kernel_size)
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (*window, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    mean = self.variable("batch_stats", "mean", jnp.zeros, (self.features,))
    var = self.variable("batch_stats", "var", jnp.ones, (self.features,))
    padding = self.padding if isinstance(self.padding, str) else tuple(tuple(pair) for pair in self.padding)
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=tuple(self.strides or (1,) * len(window)), padding=padding,
        dimension_numbers=_DIMENSION_NUMBERS[len(window)], precision=jax.lax.Precision.HIGHEST,
    )
    return nn.relu((y - mean.value) * jax.lax.rsqrt(var.value + BATCH_NORM_EPS) + bias)
