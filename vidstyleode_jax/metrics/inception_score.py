"""Inception Score from the 1008-way logits of Inception-v3 (2015-12-05), in float64 NumPy.

As in the reference (Salimans et al. 2016; StyleGAN2-ADA's metric): p(y|x) = softmax(logits) with the logits taken
without the output bias, the samples cut in `num_splits` consecutive parts (part i is samples [i n / s, (i + 1) n / s)),
per part exp(mean_x KL(p(y|x) || p(y))) with p(y) the part's mean, and the mean and standard deviation over parts.
"""

import numpy as np
import scipy.special

NUM_SPLITS = 10


def inception_score(logits: np.ndarray, num_splits: int = NUM_SPLITS) -> tuple[float, float]:
  """logits: [n >= num_splits, classes] -> (mean, standard deviation) of the per-split scores."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or logits.shape[0] < num_splits:
    raise ValueError(f"need logits [n >= {num_splits}, classes] for {num_splits} splits, got shape "
                     f"{list(logits.shape)}")
  log_probs = scipy.special.log_softmax(logits, axis=1)
  n = len(logits)
  scores = []
  for i in range(num_splits):
    part = log_probs[i * n // num_splits:(i + 1) * n // num_splits]
    log_marginal = scipy.special.logsumexp(part, axis=0) - np.log(len(part))
    kl = np.sum(np.exp(part) * (part - log_marginal), axis=1)
    scores.append(np.exp(np.mean(kl)))
  return float(np.mean(scores)), float(np.std(scores))
