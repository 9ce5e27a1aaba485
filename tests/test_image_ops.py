"""Resampling against PyTorch's F.interpolate (what torchvision's tensor Resize calls)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidstyleode_jax import image_ops

TOLERANCE = 1e-5


def random_images(height, width, seed=0):
  return np.random.default_rng(seed).uniform(size=(2, height, width, 3)).astype(np.float32)


def torch_resize(images, height, width, mode, antialias):
  """F.interpolate on channel-last NumPy images."""
  nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
  out = F.interpolate(nchw, size=(height, width), mode=mode, align_corners=False, antialias=antialias)
  return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize(
    "in_size, out_size",
    [
        ((256, 192), (128, 96)),
        ((64, 32), (24, 12)),
        ((64, 32), (32, 24)),
        ((10, 7), (23, 31)),
        ((9, 13), (9, 13)),
    ],
)
def test_resize_bicubic_torch_matches_interpolate(in_size, out_size):
  images = random_images(*in_size)
  expected = torch_resize(images, *out_size, mode="bicubic", antialias=False)
  got = np.asarray(image_ops.resize_bicubic_torch(images, *out_size))
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
@pytest.mark.parametrize(
    "in_size, out_size",
    [
        ((256, 192), (128, 96)),
        ((64, 32), (48, 24)),
        ((40, 30), (32, 42)),
        ((12, 9), (25, 18)),
    ],
)
def test_resize_antialiased_matches_interpolate(method, in_size, out_size):
  images = random_images(*in_size, seed=1)
  expected = torch_resize(images, *out_size, mode=method, antialias=True)
  got = np.asarray(image_ops.resize_antialiased(images, *out_size, method))
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_resize_antialiased_rejects_unknown_method():
  with pytest.raises(ValueError, match="nearest"):
    image_ops.resize_antialiased(random_images(8, 8), 4, 4, "nearest")


@pytest.mark.parametrize("in_size, out_size", [(14, 16), (14, 11), (7, 15), (4, 3)])
def test_bicubic_resize_matrix_matches_scale_factor_interpolate(in_size, out_size):
  """DINO's call: F.interpolate(scale_factor=(n + 0.1) / in, mode='bicubic'), which maps with 1 / scale_factor."""
  signal = np.random.default_rng(2).normal(size=(in_size, 5)).astype(np.float32)
  scale_factor = (out_size + 0.1) / in_size
  expected = F.interpolate(
      torch.from_numpy(signal.T[None, :, :, None]), scale_factor=(scale_factor, 1.0), mode="bicubic"
  )[0, :, :, 0].numpy().T
  matrix = image_ops.bicubic_resize_matrix(in_size, out_size, in_size / (out_size + 0.1))
  assert expected.shape == (out_size, 5)
  np.testing.assert_allclose(matrix @ signal, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    "height, width, short, expected",
    [
        (1024, 512, 224, (448, 224)),
        (256, 192, 224, (298, 224)),
        (256, 192, 244, (325, 244)),
        (1024, 512, 244, (488, 244)),
        (1024, 1024, 244, (244, 244)),
        (192, 256, 224, (224, 298)),
    ],
)
def test_short_side_size(height, width, short, expected):
  assert image_ops.short_side_size(height, width, short) == expected


@pytest.mark.parametrize(
    "height, width, size, top, left",
    [
        (298, 224, 224, 37, 0),
        (7, 10, 4, 2, 3),
        (9, 11, 4, 2, 4),
        (4, 4, 4, 0, 0),
    ],
)
def test_center_crop_offsets_round_half_to_even(height, width, size, top, left):
  images = random_images(height, width)
  np.testing.assert_array_equal(
      np.asarray(image_ops.center_crop(images, size)), images[:, top:top + size, left:left + size]
  )


def test_center_crop_rejects_small_image():
  with pytest.raises(ValueError, match="3x10"):
    image_ops.center_crop(random_images(3, 10), 4)
