"""A stride-2 convolution whose input gradient is one stride-1 convolution and a depth-to-space.

The input gradient of a stride-s convolution is a transposed convolution. XLA writes it as a convolution of the
output gradient dilated with s - 1 zeros between its entries, so that for s = 2 three of every four products
are with zeros; on XLA:CPU this made the frame encoder's stride-2 layers the slowest of its backward pass
(docs/performance.md §1).

Here the same sums are grouped by output phase. Input row 2a + r (r = 0 or 1) receives the output gradient's rows
a - j through kernel tap r + 2j, for every j >= 0 with r + 2j < k. With m = ceil(k / 2) those are at most m rows,
so one stride-1 m x m convolution of the output gradient yields all four phases (r, c) as four channel groups,
and a depth-to-space puts them in place. A tap r + 2j >= k is a zero kernel entry: for k = 3, 9 of the 16
(tap, phase) pairs are real, against 9 of 36 for the dilated form.
"""

import functools

import jax
import jax.numpy as jnp

DIMENSIONS = ("NHWC", "HWIO", "NHWC")
STRIDE = 2


def _conv(x, kernel, stride):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "VALID", dimension_numbers=DIMENSIONS)


def phase_kernel(kernel: jax.Array) -> jax.Array:
  """[k, k, c_in, c_out] -> [m, m, c_out, 4 c_in], m = ceil(k / 2): the output gradient's kernel of each phase.

  Window position p over the (m - 1)-padded output gradient reads its row a + p - (m - 1), that is a - j with
  j = m - 1 - p, and so takes tap r + 2j for phase r. Channel group 2r + c holds phase (r, c).
  """
  k, _, c_in, c_out = kernel.shape
  m = (k + 1) // 2
  transposed = jnp.swapaxes(kernel, 2, 3)
  zero = jnp.zeros((c_out, c_in), kernel.dtype)
  tap = lambda phase, position: phase + STRIDE * (m - 1 - position)

  def entry(p, q, r, c):
    i, j = tap(r, p), tap(c, q)
    return transposed[i, j] if i < k and j < k else zero

  return jnp.stack([
      jnp.stack([jnp.concatenate([entry(p, q, r, c) for r in range(STRIDE) for c in range(STRIDE)], axis=-1)
                 for q in range(m)])
      for p in range(m)
  ])


def input_gradient(output_grad: jax.Array, kernel: jax.Array, input_hw: tuple[int, int]) -> jax.Array:
  """The gradient w.r.t. x of sum(conv_stride2(x, kernel) * output_grad): [n, ho, wo, c_out] -> [n, h, w, c_in]."""
  n, ho, wo, _ = output_grad.shape
  k, c_in = kernel.shape[0], kernel.shape[2]
  m = (k + 1) // 2
  rows, cols = -(-input_hw[0] // STRIDE), -(-input_hw[1] // STRIDE)
  padded = jnp.pad(output_grad, ((0, 0), (m - 1, rows - ho), (m - 1, cols - wo), (0, 0)))
  phases = _conv(padded, phase_kernel(kernel), 1).reshape(n, rows, cols, STRIDE, STRIDE, c_in)
  grad = phases.transpose(0, 1, 3, 2, 4, 5).reshape(n, STRIDE * rows, STRIDE * cols, c_in)
  return grad[:, :input_hw[0], :input_hw[1]]


@jax.custom_vjp
def conv_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's VALID stride-2 convolution, x [n, h, w, c_in] and kernel [k, k, c_in, c_out] -> [n, ho, wo, c_out].

  Forward and kernel gradient are XLA's; the input gradient is `input_gradient`.
  """
  return _conv(x, kernel, STRIDE)


def _forward(x, kernel):
  return _conv(x, kernel, STRIDE), (x, kernel)


def _backward(residuals, output_grad):
  x, kernel = residuals
  _, kernel_vjp = jax.vjp(functools.partial(_conv, x, stride=STRIDE), kernel)
  return input_gradient(output_grad, kernel, x.shape[1:3]), kernel_vjp(output_grad)[0]


conv_stride2.defvjp(_forward, _backward)
