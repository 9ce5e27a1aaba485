"""Image resampling and cropping with PyTorch/torchvision numerics.

All images are channel-last, `[batch, height, width, channels]`. Output sizes are static Python ints, so the
PyTorch-style bicubic resize is two small interpolation matrices built in NumPy at trace time and applied with
einsum. See docs/checkpoints.md §6 for which call reproduces which PyTorch operation.
"""

import jax
import jax.numpy as jnp
import numpy as np

TORCH_BICUBIC_A = -0.75

_HIGHEST = jax.lax.Precision.HIGHEST


def _cubic_convolution(distance: np.ndarray, a: float) -> np.ndarray:
  """Keys' cubic-convolution kernel with coefficient `a`, evaluated at |distance| < 2."""
  d = np.abs(distance)
  near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
  far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
  return np.where(d <= 1.0, near, far)


def bicubic_resize_matrix(in_size: int, out_size: int, scale: float, a: float = TORCH_BICUBIC_A) -> np.ndarray:
  """1-D PyTorch bicubic (`align_corners=False`, no antialias) as a matrix.

  Output index d samples the source coordinate (d + 0.5) * scale - 0.5 with the four taps floor(src) - 1 ...
  floor(src) + 2, each clamped to [0, in_size - 1]. PyTorch uses scale = in_size / out_size when given a size and
  scale = 1 / scale_factor when given a scale factor (as DINO does).

  Returns:
    [out_size, in_size] float32 matrix; resampled = matrix @ signal.
  """
  source = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
  first = np.floor(source)
  fraction = source - first
  matrix = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  for offset in (-1, 0, 1, 2):
    taps = np.clip(first + offset, 0, in_size - 1).astype(np.int64)
    np.add.at(matrix, (rows, taps), _cubic_convolution(fraction - offset, a))
  return matrix.astype(np.float32)


def resize_bicubic_torch(images: jax.Array, height: int, width: int) -> jax.Array:
  """`F.interpolate(mode='bicubic', align_corners=False)`: A = -0.75, border-clamped taps, no antialias.

  Args:
    images: [batch, in_height, in_width, channels] float.
    height, width: output size.

  Returns:
    [batch, height, width, channels], same dtype; values may overshoot the input range, as in PyTorch.
  """
  in_height, in_width = images.shape[1:3]
  rows = bicubic_resize_matrix(in_height, height, in_height / height)
  cols = bicubic_resize_matrix(in_width, width, in_width / width)
  resized = jnp.einsum("oh,bhwc->bowc", rows, images, precision=_HIGHEST)
  return jnp.einsum("pw,bowc->bopc", cols, resized, precision=_HIGHEST).astype(images.dtype)


def resize_antialiased(images: jax.Array, height: int, width: int, method: str) -> jax.Array:
  """torchvision>=0.17 tensor `Resize` (antialias on): `F.interpolate(..., antialias=True)`.

  Args:
    images: [batch, in_height, in_width, channels] float.
    height, width: output size.
    method: 'bilinear' or 'bicubic' (PyTorch's antialiased bicubic uses A = -0.5, like `jax.image.resize`).

  Returns:
    [batch, height, width, channels]; the input itself when the size is unchanged, as torchvision does.
  """
  jax_methods = {"bilinear": "linear", "bicubic": "cubic"}
  if method not in jax_methods:
    raise ValueError(f"resize method must be one of {sorted(jax_methods)}, got {method!r}")
  if images.shape[1:3] == (height, width):
    return images
  shape = (images.shape[0], height, width, images.shape[3])
  return jax.image.resize(images, shape, method=jax_methods[method], antialias=True)


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
  """torchvision's `Resize(short)` output size: short side -> short, long side -> int(short * long / short_in)."""
  if height <= width:
    return short, int(short * width / height)
  return int(short * height / width), short


def center_crop(images: jax.Array, size: int) -> jax.Array:
  """torchvision `CenterCrop(size)`: offsets round((in - size) / 2) with Python's round-half-to-even.

  Args:
    images: [batch, height, width, channels] with height, width >= size.

  Returns:
    [batch, size, size, channels].
  """
  height, width = images.shape[1:3]
  if height < size or width < size:
    raise ValueError(f"center_crop to {size}x{size} needs an image at least that large, got {height}x{width}")
  top = round((height - size) / 2)
  left = round((width - size) / 2)
  return images[:, top:top + size, left:left + size]
