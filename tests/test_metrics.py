"""The metric math against closed forms and independent references (scipy, scikit-image, a NumPy transcription of
Lai et al.'s warping-error evaluation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import skimage.data
import skimage.metrics
import skimage.transform

from vidstyleode_jax.metrics import clip_accuracy, frechet, inception_score, reconstruction, warping


@pytest.fixture(autouse=True)
def float32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


# ------------------------------------------------------------------------------------------------ Fréchet distance


def random_statistics(rng, dims):
  """A mean and a well-conditioned full-rank covariance."""
  factor = rng.normal(size=(dims, 2 * dims))
  return rng.normal(size=dims), factor @ factor.T / (2 * dims) + 0.1 * np.eye(dims)


def scipy_frechet(mean1, cov1, mean2, cov2):
  """The pytorch-fid / StyleGAN route: scipy.linalg.sqrtm of the product."""
  root = scipy.linalg.sqrtm(cov1 @ cov2).real
  return np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root)


@pytest.mark.parametrize("dims", [8, 64, 256])
def test_frechet_distance_matches_scipy_sqrtm(dims):
  rng = np.random.default_rng(dims)
  stats1, stats2 = random_statistics(rng, dims), random_statistics(rng, dims)
  expected = scipy_frechet(*stats1, *stats2)
  got = frechet.frechet_distance(*stats1, *stats2)
  assert expected > 1.0
  assert abs(got - expected) <= 1e-6 * expected, (got, expected)


@pytest.mark.parametrize("samples, dims", [(300, 64), (100, 400)])
def test_frechet_distance_of_a_set_with_itself_is_zero(samples, dims):
  """Also with fewer samples than dimensions (a singular covariance), as for FID on a few hundred videos."""
  features = np.random.default_rng(0).normal(size=(samples, dims)) * 3 + 1
  assert abs(frechet.frechet_distance_of_features(features, features)) <= 1e-6
  shifted = features + 0.5
  assert frechet.frechet_distance_of_features(features, shifted) == pytest.approx(0.25 * dims, rel=1e-9)


@pytest.mark.parametrize("samples1, samples2, dims", [(3, 5, 64), (120, 90, 400), (100, 100, 100)])
def test_frechet_distance_of_few_features_matches_the_statistics_route(samples1, samples2, dims):
  """The sample-space route (an [n1, n2] SVD) equals the covariance route of frechet_distance."""
  rng = np.random.default_rng(samples1)
  mixing = np.linalg.qr(rng.normal(size=(dims, dims)))[0] * rng.uniform(0.5, 2.0, size=dims)
  features1 = rng.normal(size=(samples1, dims)) @ mixing
  features2 = (rng.normal(size=(samples2, dims)) * 1.5 + 0.3) @ mixing
  expected = frechet.frechet_distance(*frechet.gaussian_statistics(features1), *frechet.gaussian_statistics(features2))
  assert frechet.frechet_distance_of_features(features1, features2) == pytest.approx(expected, rel=1e-9)


def with_exact_statistics(rng, samples, mean, stddevs, rotation):
  """Features whose sample mean is `mean` and sample covariance (n - 1) is R diag(stddevs^2) R^T exactly."""
  z = rng.normal(size=(samples, len(mean)))
  z -= z.mean(axis=0)
  z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
  return (mean + z * stddevs) @ rotation.T


def test_frechet_distance_of_two_gaussian_sets_matches_closed_form():
  """Covariances R diag(a^2) R^T and R diag(b^2) R^T commute: d^2 = |mu_a - mu_b|^2 + sum (a_i - b_i)^2."""
  rng = np.random.default_rng(1)
  dims = 16
  rotation = np.linalg.qr(rng.normal(size=(dims, dims)))[0]
  mean_a, mean_b = rng.normal(size=dims), rng.normal(size=dims)
  std_a, std_b = rng.uniform(0.5, 2.0, size=dims), rng.uniform(0.5, 2.0, size=dims)
  features_a = with_exact_statistics(rng, 500, mean_a, std_a, rotation)
  features_b = with_exact_statistics(rng, 700, mean_b, std_b, rotation)
  expected = np.sum((mean_a - mean_b) ** 2) + np.sum((std_a - std_b) ** 2)
  assert frechet.frechet_distance_of_features(features_a, features_b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_rejects_bad_inputs():
  with pytest.raises(ValueError, match="n >= 2"):
    frechet.frechet_distance_of_features(np.zeros((1, 4)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match="do not match"):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ------------------------------------------------------------------------------------------------- Inception Score


def confident_logits(classes_per_sample, num_classes=1008):
  return 50.0 * np.eye(num_classes)[classes_per_sample]


def test_inception_score_of_balanced_confident_classes_is_the_class_count():
  logits = confident_logits(np.arange(200) % 5)
  mean, std = inception_score.inception_score(logits)
  assert mean == pytest.approx(5.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_splits_are_consecutive():
  """Each consecutive tenth holds one class (score 1 per split), though the whole set holds two."""
  logits = confident_logits(np.repeat(np.arange(10) % 2, 20))
  assert inception_score.inception_score(logits) == pytest.approx((1.0, 0.0), abs=1e-9)
  mean, _ = inception_score.inception_score(logits, num_splits=1)
  assert mean == pytest.approx(2.0, rel=1e-9)


def test_inception_score_of_uniform_predictions_is_one():
  assert inception_score.inception_score(np.zeros((30, 1008)))[0] == pytest.approx(1.0, abs=1e-12)
  with pytest.raises(ValueError, match="10 splits"):
    inception_score.inception_score(np.zeros((9, 1008)))


# ------------------------------------------------------------------------------------------------- warping error


def smooth_image(rng, height, width):
  return np.clip(scipy.ndimage.gaussian_filter(rng.uniform(size=(height, width, 3)), (2, 2, 0)) * 2 - 0.5, 0, 1)


def lai_reference(frames, forward_flows, backward_flows):
  """Lai et al.'s evaluate_WarpError / detect_occlusion in NumPy, one pair at a time (float64)."""

  def resample(image, flow):
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = [ys + flow[..., 1], xs + flow[..., 0]]
    return np.stack([scipy.ndimage.map_coordinates(image[..., c], coords, order=1, mode="nearest")
                     for c in range(image.shape[-1])], axis=-1)

  errors = []
  for video, fws, bws in zip(frames, forward_flows, backward_flows):
    total = 0.0
    for t, (fw, bw) in enumerate(zip(fws.astype(np.float64), bws.astype(np.float64))):
      bw_warped = resample(bw, fw)
      magnitude = lambda f: f[..., 0] ** 2 + f[..., 1] ** 2
      occluded = magnitude(fw + bw_warped) > 0.01 * (magnitude(bw_warped) + magnitude(fw)) + 0.5
      gradients = np.zeros(fw.shape[:2])
      for axis in (0, 1):
        for c in (0, 1):
          diff = np.zeros(fw.shape[:2])
          if axis == 1:
            diff[:, :-1] = fw[:, :-1, c] - fw[:, 1:, c]
          else:
            diff[:-1, :] = fw[:-1, :, c] - fw[1:, :, c]
          gradients += diff**2
      occluded |= gradients > 0.01 * magnitude(fw) + 0.002
      visible = np.repeat((1.0 - occluded)[..., None], 3, axis=-1)
      diff = (resample(video[t + 1].astype(np.float64), fw) - video[t]) * visible
      count = visible.sum() or diff.size
      total += np.sum(diff**2) / count
    errors.append(total / (len(video) - 1))
  return np.array(errors)


def test_warping_error_matches_lai_reference():
  """Random frames; two regions moving differently (a motion boundary) with small smooth variations, and a patch
  where the backward flow disagrees with the forward flow (an occlusion)."""
  rng = np.random.default_rng(0)
  shape = (2, 3, 20, 24, 2)
  x, y = np.arange(24)[None, None, None, :, None], np.arange(20)[None, None, :, None, None]
  variation = scipy.ndimage.gaussian_filter(rng.normal(scale=0.5, size=shape), (0, 0, 4, 4, 0))
  forward = np.where(x < 12, np.array([1.5, 0.5]), np.array([-1.0, 2.25])) + variation
  backward = -forward + np.where((y < 8) & (x > 14), rng.normal(scale=2.0, size=shape), 0)
  forward, backward = forward.astype(np.float32), backward.astype(np.float32)
  frames = rng.uniform(size=(2, 4, 20, 24, 3)).astype(np.float32)
  occluded = np.asarray(warping.occlusion_mask(forward.reshape(-1, 20, 24, 2), backward.reshape(-1, 20, 24, 2)))
  assert 0.1 < occluded.mean() < 0.5, occluded.mean()
  expected = lai_reference(frames, forward, backward)
  got = np.asarray(warping.warping_error(frames, forward, backward))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def translated_video(rng, frames, shift, height=48, width=56):
  """Frame t is a window of a larger smooth image moved by t * shift: frame t+1 at p + shift shows frame t at p."""
  big = smooth_image(rng, height + frames * abs(shift[1]) + 1, width + frames * abs(shift[0]) + 1)
  dx, dy = shift
  video = [big[frames * dy - t * dy:, frames * dx - t * dx:][:height, :width] for t in range(frames)]
  return np.stack(video)[None].astype(np.float32)


def constant_flows(video, flow):
  return np.broadcast_to(np.asarray(flow, np.float32), video.shape[:1] + (video.shape[1] - 1,) + video.shape[2:4]
                         + (2,))


def test_warping_error_static_translation_and_flicker():
  rng = np.random.default_rng(2)
  static = np.repeat(smooth_image(rng, 32, 40)[None, None], 5, axis=1).astype(np.float32)
  zero = constant_flows(static, (0, 0))
  assert float(warping.warping_error(static, zero, zero)[0]) == 0.0

  moving = translated_video(rng, 5, (2, 1))
  forward, backward = constant_flows(moving, (2, 1)), constant_flows(moving, (-2, -1))
  translation_error = float(warping.warping_error(moving, forward, backward)[0])
  wrong_direction = float(warping.warping_error(moving, backward, forward)[0])
  assert translation_error < 1e-3 and translation_error < wrong_direction / 20, (translation_error, wrong_direction)

  brightness = np.where(np.arange(5) % 2 == 0, 0.1, -0.1).astype(np.float32)[None, :, None, None, None]
  flicker = 0.2 + 0.6 * static + brightness
  assert float(warping.warping_error(flicker, zero, zero)[0]) == pytest.approx(0.04, rel=1e-5)


def test_frame_pair_flows_pairs_consecutive_frames_both_ways():
  """A stand-in flow function whose flow is the mean of (image2 - image1), to check which pair goes where."""
  frames = np.random.default_rng(3).uniform(size=(2, 4, 8, 8, 3)).astype(np.float32)

  def mean_difference(image1, image2):
    value = jnp.mean(image2 - image1, axis=(1, 2, 3))
    return jnp.broadcast_to(value[:, None, None, None], image1.shape[:3] + (2,))

  forward, backward = warping.frame_pair_flows(mean_difference, frames)
  expected = 2 * (frames[:, 1:] - frames[:, :-1]).mean(axis=(2, 3, 4))
  assert forward.shape == backward.shape == (2, 3, 8, 8, 2)
  np.testing.assert_allclose(np.asarray(forward)[:, :, 0, 0, 0], expected, atol=1e-6)
  np.testing.assert_allclose(np.asarray(backward)[:, :, 0, 0, 0], -expected, atol=1e-6)


# ------------------------------------------------------------------------------------------ manipulation accuracy


def test_manipulation_accuracy_hand_built():
  """Video 0 looks like the target, video 1 like its description; video 2 has one target frame and one frame near
  the description: its mean similarity to the target (0.55) beats the description's (0.50)."""
  target, source, other = np.eye(4)[0], np.eye(4)[1], np.eye(4)[2]
  near_source = 0.1 * target + source
  frames = np.stack([
      [target + 0.2 * other, target],
      [source, source + 0.3 * other],
      [target, near_source],
  ]) * np.array([3.0, 0.5])[None, :, None]  # CLIP embeddings are not normalised
  targets, sources = np.stack([target] * 3) * 7.0, np.stack([source] * 3) * 0.2
  result = clip_accuracy.manipulation_accuracy(frames, targets, sources)
  assert np.asarray(result["correct"]).tolist() == [True, False, True]
  assert float(result["accuracy"]) == pytest.approx(2 / 3)
  cos_near = 0.1 / np.linalg.norm(near_source)
  expected_target = [(1 / np.linalg.norm([1, 0, 0.2, 0]) + 1) / 2, 0.0, (1 + cos_near) / 2]
  np.testing.assert_allclose(np.asarray(result["target_similarity"]), expected_target, atol=1e-6)
  np.testing.assert_allclose(float(result["source_similarity"][2]), (1 / np.linalg.norm(near_source)) / 2, atol=1e-6)


# ----------------------------------------------------------------------------------------------------- PSNR, SSIM


def image_pairs():
  """A real photograph with noise and blur, and random images; [n, h, w, 3] in [0, 1]."""
  rng = np.random.default_rng(4)
  photo = skimage.transform.resize(skimage.data.astronaut(), (64, 48), anti_aliasing=True)
  noisy = np.clip(photo + rng.normal(scale=0.05, size=photo.shape), 0, 1)
  blurred = scipy.ndimage.gaussian_filter(photo, (1.5, 1.5, 0))
  random = rng.uniform(size=(64, 48, 3))
  images = np.stack([noisy, blurred, random]).astype(np.float32)
  references = np.stack([photo, photo, np.clip(random + 0.1, 0, 1)]).astype(np.float32)
  return images, references


def test_psnr_and_ssim_match_scikit_image():
  images, references = image_pairs()
  got_psnr = np.asarray(reconstruction.psnr(images, references))
  got_ssim = np.asarray(reconstruction.ssim(images, references))
  for image, reference, psnr, ssim in zip(images, references, got_psnr, got_ssim):
    expected_psnr = skimage.metrics.peak_signal_noise_ratio(reference, image, data_range=1.0)
    expected_ssim = skimage.metrics.structural_similarity(
        reference, image, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False)
    assert psnr == pytest.approx(expected_psnr, abs=1e-4)
    assert ssim == pytest.approx(expected_ssim, abs=1e-5)
  assert np.ptp(got_ssim) > 0.05  # the cases differ


def test_psnr_closed_form_and_identical_images():
  images = np.full((2, 16, 16, 3), 0.5, np.float32)
  assert np.asarray(reconstruction.psnr(images + 0.1, images)) == pytest.approx([20.0, 20.0], abs=1e-4)
  assert np.asarray(reconstruction.psnr(255 * (images + 0.01), 255 * images, data_range=255.0)) == pytest.approx(
      [40.0, 40.0], abs=1e-3)
  assert np.asarray(reconstruction.ssim(images, images)) == pytest.approx([1.0, 1.0], abs=1e-6)
