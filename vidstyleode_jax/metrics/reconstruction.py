"""Reconstruction quality: PSNR and SSIM per image, batched and jitted.

SSIM follows Wang et al. 2004 with the usual settings (those of scikit-image's `structural_similarity` with
`gaussian_weights=True, sigma=1.5, use_sample_covariance=False`): Gaussian-weighted local statistics over an 11x11
window (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, averaged over the positions where the window fits
inside the image and over channels.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


@functools.partial(jax.jit, static_argnames="data_range")
def psnr(images: jax.Array, references: jax.Array, data_range: float = 1.0) -> jax.Array:
  """images, references: [n, h, w, c] -> [n] 10 log10(data_range^2 / mean squared error) in dB."""
  mse = jnp.mean(jnp.square(images - references), axis=(1, 2, 3))
  return 10.0 * jnp.log10(data_range**2 / mse)


def _gaussian_window() -> np.ndarray:
  radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / SSIM_SIGMA) ** 2)
  return (taps / taps.sum()).astype(np.float32)


def _local_mean(x: jax.Array) -> jax.Array:
  """Separable Gaussian filter over height and width, 'valid' positions only: [n, h, w, c] -> [n, h', w', c]."""
  window = _gaussian_window()
  size = len(window)
  rows = sum(window[k] * x[:, k:x.shape[1] - size + 1 + k] for k in range(size))
  return sum(window[k] * rows[:, :, k:x.shape[2] - size + 1 + k] for k in range(size))


@functools.partial(jax.jit, static_argnames="data_range")
def ssim(images: jax.Array, references: jax.Array, data_range: float = 1.0) -> jax.Array:
  """images, references: [n, h >= 11, w >= 11, c] -> [n] mean SSIM."""
  c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
  mean_x, mean_y = _local_mean(images), _local_mean(references)
  var_x = _local_mean(images * images) - mean_x**2
  var_y = _local_mean(references * references) - mean_y**2
  cov = _local_mean(images * references) - mean_x * mean_y
  ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
  return jnp.mean(ssim_map, axis=(1, 2, 3))
