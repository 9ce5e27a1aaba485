"""StyleGAN2-style equalised-learning-rate layers, shared by the generator and the dynamics encoder.

Equalised layers store their weights as N(0, 1) / lr_mul and scale them at run time by lr_mul / sqrt(fan_in).
The stored (raw) parametrisation is what the PyTorch checkpoints hold and what Adam sees, so it is kept.
All tensors are channel-last.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidstyleode_jax import backends
from vidstyleode_jax.models import strided_conv

LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)


def fused_leaky_relu(x: jax.Array, bias: jax.Array | None = None) -> jax.Array:
  """lrelu_0.2(x + bias) * sqrt(2), the bias broadcast over the last (channel) axis."""
  if bias is not None:
    x = x + bias
  return jnp.where(x >= 0, x, LEAKY_SLOPE * x) * LEAKY_GAIN


class FusedLeakyReLU(nn.Module):
  """Per-channel bias (zero-initialised), then fused_leaky_relu."""

  @nn.compact
  def __call__(self, x):
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
    return fused_leaky_relu(x, bias.astype(x.dtype))


class EqualDense(nn.Module):
  """y = x @ (kernel * lr_mul / sqrt(in)) + bias * lr_mul; kernel stored [in, out]."""

  features: int
  use_bias: bool = True
  lr_mul: float = 1.0
  bias_init_value: float = 0.0

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    kernel = self.param(
        "kernel",
        lambda key, shape: jax.random.normal(key, shape) / self.lr_mul,
        (fan_in, self.features),
    )
    y = x @ (kernel * (self.lr_mul / math.sqrt(fan_in))).astype(x.dtype)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.constant(self.bias_init_value), (self.features,))
      y = y + (bias * self.lr_mul).astype(x.dtype)
    return y


class EqualConv2d(nn.Module):
  """Conv with an equalised-lr kernel [kh, kw, in, out]; padding as explicit ((top, bottom), (left, right)).

  A stride-2 convolution takes its input gradient from models/strided_conv.py where the backend prefers it
  (backends.strided_input_gradient_by_phases); the same sums either way.
  """

  features: int
  kernel_size: int
  stride: int = 1
  padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0))
  use_bias: bool = False

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1] * self.kernel_size**2
    kernel = self.param(
        "kernel",
        nn.initializers.normal(1.0),
        (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
    )
    kernel = (kernel / math.sqrt(fan_in)).astype(x.dtype)
    if self.stride == strided_conv.STRIDE and backends.strided_input_gradient_by_phases():
      y = strided_conv.conv_stride2(jnp.pad(x, ((0, 0), *self.padding, (0, 0))), kernel)
    else:
      y = jax.lax.conv_general_dilated(
          x,
          kernel,
          window_strides=(self.stride, self.stride),
          padding=tuple(self.padding),
          dimension_numbers=("NHWC", "HWIO", "NHWC"),
      )
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
    return y


def torch_default_init(fan_in: int):
  """PyTorch's default init of Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_dense(features: int, in_features: int, name: str | None = None) -> nn.Dense:
  """A dense layer with bias, initialised like torch.nn.Linear."""
  init = torch_default_init(in_features)
  return nn.Dense(features, kernel_init=init, bias_init=init, name=name)


def conv_same(x: jax.Array, kernel: jax.Array, as_matmul: bool) -> jax.Array:
  """Stride-1 convolution with zero padding k // 2 (odd k), so that height and width are kept.

  Args:
    x: [..., h, w, c_in].
    kernel: [k, k, c_in, c_out].
    as_matmul: compute it as one matmul of the k * k shifted copies of x (im2col) instead of XLA's convolution;
      the same sums, in another order (see backends.py for when each is used).

  Returns:
    [..., h, w, c_out].
  """
  k, lead, (height, width) = kernel.shape[0], x.shape[:-3], x.shape[-3:-1]
  x = x.reshape((-1,) + x.shape[-3:])
  if as_matmul:
    padded = jnp.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    patches = [padded[:, i:i + height, j:j + width] for i in range(k) for j in range(k)]
    y = jnp.concatenate(patches, axis=-1) @ kernel.reshape(-1, kernel.shape[-1])
  else:
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), [(k // 2, k // 2)] * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y.reshape(lead + y.shape[1:])


class Conv(nn.Module):
  """A k x k stride-1 convolution with bias, zero padding k // 2 and PyTorch's default init.

  Parameters as flax.linen.Conv's: kernel [k, k, c_in, features], bias [features].

  Attributes:
    as_matmul: see conv_same; None picks the backend's choice (backends.convolutions_as_matmul).
  """

  features: int
  kernel_size: int
  as_matmul: bool | None = None

  @nn.compact
  def __call__(self, x):
    """x: [..., h, w, c_in] -> [..., h, w, features]."""
    init = torch_default_init(x.shape[-1] * self.kernel_size**2)
    kernel = self.param("kernel", init, (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
    bias = self.param("bias", init, (self.features,))
    as_matmul = backends.convolutions_as_matmul() if self.as_matmul is None else self.as_matmul
    return conv_same(x, kernel.astype(x.dtype), as_matmul) + bias.astype(x.dtype)
