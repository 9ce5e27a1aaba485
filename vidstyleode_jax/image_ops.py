"""Image resampling, bilinear sampling at pixel coordinates and cropping with PyTorch/TensorFlow numerics.

All images are channel-last, `[batch, height, width, channels]`. Output sizes are static Python ints, so the
fixed-grid resizes are two small interpolation matrices built in NumPy at trace time and applied with einsum.
See docs/weight_formats.md §6 for which call reproduces which PyTorch operation.
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


def _linear_matrix(source: np.ndarray, in_size: int) -> np.ndarray:
  """[len(source), in_size] linear interpolation weights at the source coordinates, taps clamped to the border."""
  lower = np.clip(np.floor(source), 0, in_size - 1).astype(np.int64)
  upper = np.minimum(lower + 1, in_size - 1)
  fraction = np.clip(source - lower, 0.0, 1.0)
  matrix = np.zeros((len(source), in_size), np.float64)
  rows = np.arange(len(source))
  np.add.at(matrix, (rows, lower), 1.0 - fraction)
  np.add.at(matrix, (rows, upper), fraction)
  return matrix.astype(np.float32)


def align_corners_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] bilinear weights with align_corners=True: source = dst * (in - 1) / (out - 1)."""
  scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  return _linear_matrix(np.arange(out_size) * scale, in_size)


def tf1_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] weights of TF1's `tf.image.resize_bilinear` (align_corners=False, no half-pixel centers).

  Output index d samples source coordinate d * in / out, the upper tap clamped to the last pixel. NVIDIA's
  Inception TorchScript reproduces it with `affine_grid` + `grid_sample(padding_mode='border')`.
  """
  return _linear_matrix(np.arange(out_size) * (in_size / out_size), in_size)


def _resize_separable(images: jax.Array, rows: np.ndarray, cols: np.ndarray) -> jax.Array:
  """rows: [height, in_height], cols: [width, in_width] applied to [batch, in_height, in_width, channels]."""
  resized = jnp.einsum("oh,bhwc->bowc", jnp.asarray(rows, images.dtype), images, precision=_HIGHEST)
  return jnp.einsum("pw,bowc->bopc", jnp.asarray(cols, images.dtype), resized, precision=_HIGHEST)


def resize_bilinear_align_corners(images: jax.Array, height: int, width: int) -> jax.Array:
  """PyTorch's `F.interpolate(mode="bilinear", align_corners=True)`.

  Args:
    images: [batch, in_height, in_width, channels].
    height, width: output size.

  Returns:
    [batch, height, width, channels].
  """
  in_height, in_width = images.shape[1:3]
  return _resize_separable(images, align_corners_matrix(in_height, height), align_corners_matrix(in_width, width))


def resize_bilinear_tf1(images: jax.Array, height: int, width: int) -> jax.Array:
  """TF1 `tf.image.resize_bilinear` (the FVD and Inception-2015-12-05 resize): no antialias, see tf1_bilinear_matrix.

  Args:
    images: [batch, in_height, in_width, channels].
    height, width: output size.

  Returns:
    [batch, height, width, channels]; equal to the input when the size is unchanged.
  """
  in_height, in_width = images.shape[1:3]
  return _resize_separable(images, tf1_bilinear_matrix(in_height, height), tf1_bilinear_matrix(in_width, width))


def bilinear_sample(images: jax.Array, x: jax.Array, y: jax.Array, padding: str) -> jax.Array:
  """Samples images bilinearly at absolute pixel coordinates (pixel centres at integers).

  padding "border" clamps the coordinates to the image, as `grid_sample(padding_mode='border', align_corners=True)`
  and FlowNet2's Resample2d do; "zeros" gives taps outside the image the value 0, as
  `grid_sample(padding_mode='zeros', align_corners=True)` does.

  Args:
    images: [batch, height, width, channels].
    x, y: [batch, ...] horizontal and vertical coordinates.
    padding: "border" or "zeros".

  Returns:
    [batch, ..., channels].
  """
  if padding not in ("border", "zeros"):
    raise ValueError(f"padding must be 'border' or 'zeros', got {padding!r}")
  batch, height, width, channels = images.shape
  if padding == "border":
    x = jnp.clip(x, 0, width - 1)
    y = jnp.clip(y, 0, height - 1)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  flat = images.reshape(batch, height * width, channels)
  result = 0.0
  for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
    tap_x, tap_y = x0 + dx, y0 + dy
    weight = (1 - jnp.abs(x - tap_x)) * (1 - jnp.abs(y - tap_y))
    inside = (tap_x >= 0) & (tap_x <= width - 1) & (tap_y >= 0) & (tap_y <= height - 1)
    index = (jnp.clip(tap_y, 0, height - 1) * width + jnp.clip(tap_x, 0, width - 1)).astype(jnp.int32)
    values = jnp.take_along_axis(flat, index.reshape(batch, -1, 1), axis=1).reshape(*x.shape, channels)
    result = result + jnp.where(inside, weight, 0.0)[..., None] * values
  return result


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
