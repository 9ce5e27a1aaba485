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


def test_resize_bilinear_align_corners_matches_torch():
  x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
  for height, width in ((9, 12), (5, 7), (16, 3)):
    expected = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    ours = image_ops.resize_bilinear_align_corners(x.permute(0, 2, 3, 1).numpy(), height, width)
    # float32 interpolation weights summed in different orders differ by a few ulps of the largest values (~4)
    np.testing.assert_allclose(np.asarray(ours), expected.numpy(), atol=4e-6, rtol=0)


def nvidia_resize(images, height, width):
  """The resize inside NVIDIA's inception-2015-12-05 TorchScript: an affine grid shifted by 1/in - 1/out (in
  normalised units), sampled bilinearly with border padding. In float64: in float32 the grid's own rounding moves
  the sampling points by ~1e-5 px."""
  nchw = torch.from_numpy(images).permute(0, 3, 1, 2).double()
  theta = torch.eye(2, 3, dtype=torch.float64)
  theta[0, 2] += theta[0, 0] / nchw.shape[3] - theta[0, 0] / width
  theta[1, 2] += theta[1, 1] / nchw.shape[2] - theta[1, 1] / height
  grid = F.affine_grid(theta[None].repeat(len(nchw), 1, 1), [len(nchw), 3, height, width], align_corners=False)
  out = F.grid_sample(nchw, grid, mode="bilinear", padding_mode="border", align_corners=False)
  return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("in_size, out_size",
                         [((256, 192), (299, 299)), ((40, 30), (17, 45)), ((299, 299), (299, 299))])
def test_resize_bilinear_tf1_matches_nvidia_grid_sample(in_size, out_size):
  images = 255 * random_images(*in_size)
  got = np.asarray(image_ops.resize_bilinear_tf1(images, *out_size))
  np.testing.assert_allclose(got, nvidia_resize(images, *out_size), rtol=0, atol=255 * TOLERANCE)


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_bilinear_sample_matches_grid_sample(padding):
  """Absolute pixel coordinates, some outside the image, against grid_sample with align_corners=True."""
  images = random_images(6, 9)
  rng = np.random.default_rng(1)
  x = rng.uniform(-2.5, 10.5, size=(2, 4, 5)).astype(np.float32)
  y = rng.uniform(-2.5, 7.5, size=(2, 4, 5)).astype(np.float32)
  x[0, 0, :3] = [0, 8, 3]  # exactly on pixels, including the last column
  grid = torch.from_numpy(np.stack([2 * x / 8 - 1, 2 * y / 5 - 1], axis=-1))
  expected = F.grid_sample(torch.from_numpy(images).permute(0, 3, 1, 2), grid, mode="bilinear",
                           padding_mode=padding, align_corners=True).permute(0, 2, 3, 1).numpy()
  got = np.asarray(image_ops.bilinear_sample(images, x, y, padding))
  assert got.shape == (2, 4, 5, 3)
  np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_bilinear_sample_rejects_unknown_padding():
  with pytest.raises(ValueError, match="reflection"):
    image_ops.bilinear_sample(random_images(4, 4), np.zeros((2, 1)), np.zeros((2, 1)), "reflection")
