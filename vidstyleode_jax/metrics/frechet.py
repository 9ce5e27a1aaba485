"""Fréchet distance between the Gaussians fitted to two feature sets (FID, FVD), in float64 NumPy.

d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2)). The trace of the matrix square root is computed
as the sum of the square roots of the eigenvalues of S_1^(1/2) S_2 S_1^(1/2): that matrix is symmetric positive
semi-definite and similar to S_1 S_2, so both have the same eigenvalues, and its eigendecomposition stays real and
stable when the covariances are singular (fewer samples than feature dimensions, the usual case for FID on a few
hundred videos); eigenvalues within rounding of zero count as zero, so that the square roots of rounding noise do not
add up over the null space. On full-rank statistics it agrees with the `scipy.linalg.sqrtm(S_1 @ S_2)` route of
pytorch-fid and StyleGAN to rounding.
"""

import numpy as np


def _checked(features: np.ndarray) -> np.ndarray:
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"need features [n >= 2, dims] to fit a Gaussian, got shape {list(features.shape)}")
  return features


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """features: [n >= 2, dims] -> (mean [dims], covariance [dims, dims] with the n - 1 normalisation), float64."""
  features = _checked(features)
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Eigenvalues and eigenvectors of a symmetric positive semi-definite matrix; eigenvalues within rounding of zero
  (below dims * eps * the largest, numerical rank as in numpy.linalg.matrix_rank) are set to 0."""
  eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
  tolerance = len(eigenvalues) * np.finfo(np.float64).eps * np.abs(eigenvalues).max()
  return np.where(eigenvalues > tolerance, eigenvalues, 0.0), eigenvectors


def frechet_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
  """The Fréchet distance d^2 between N(mean1, cov1) and N(mean2, cov2) (means [dims], covariances [dims, dims])."""
  mean1, cov1, mean2, cov2 = (np.asarray(x, np.float64) for x in (mean1, cov1, mean2, cov2))
  if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != mean1.shape * 2:
    raise ValueError(f"statistics do not match: means {list(mean1.shape)}, {list(mean2.shape)}, covariances "
                     f"{list(cov1.shape)}, {list(cov2.shape)}")
  eigenvalues, eigenvectors = _psd_eigh(cov1)
  root1 = (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T
  trace_sqrt = np.sqrt(_psd_eigh(root1 @ cov2 @ root1)[0]).sum()
  return float(np.sum(np.square(mean1 - mean2)) + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)


def frechet_distance_of_features(features1: np.ndarray, features2: np.ndarray) -> float:
  """FID (Inception pool3) or FVD (I3D logits) of two feature sets [n_i >= 2, dims].

  With no more samples than dimensions (FID and FVD on a few hundred videos) the covariances are never formed: with
  X_i the centred features over sqrt(n_i - 1), S_i = X_i^T X_i, and the nonzero eigenvalues of S_1 S_2 are those of
  (X_1 X_2^T)(X_1 X_2^T)^T, so tr((S_1 S_2)^(1/2)) is the sum of the singular values of the [n_1, n_2] matrix
  X_1 X_2^T, and tr(S_i) = |X_i|^2 (Frobenius). Otherwise the statistics route of `frechet_distance` is taken.
  """
  features1, features2 = _checked(features1), _checked(features2)
  if features1.shape[1] != features2.shape[1]:
    raise ValueError(f"feature sets do not match: {list(features1.shape)} and {list(features2.shape)}")
  if max(len(features1), len(features2)) > features1.shape[1]:
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))
  mean1, mean2 = features1.mean(axis=0), features2.mean(axis=0)
  x1 = (features1 - mean1) / np.sqrt(len(features1) - 1)
  x2 = (features2 - mean2) / np.sqrt(len(features2) - 1)
  trace_sqrt = np.linalg.svd(x1 @ x2.T, compute_uv=False).sum()
  return float(np.sum(np.square(mean1 - mean2)) + np.sum(np.square(x1)) + np.sum(np.square(x2)) - 2 * trace_sqrt)
