"""Shared fixtures: a smaller variant of the demo config for fast end-to-end tests.

JAX's persistent compilation cache is turned on for the whole session, subprocesses included (they inherit the
environment): the same train step, generator or app program compiled by several tests is compiled once.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
sys.path.insert(0, REPO)

from configs import demo  # noqa: E402


def tiny_config(num_steps=3):
  """The demo model on fewer, shorter videos; samples and evaluation only at the end."""
  config = demo.get_config()
  config.data.update(num_train_videos=8, num_eval_videos=4, frames_per_video=12, batch_size=4)
  config.train.update(num_steps=num_steps, log_every=1, checkpoint_every=num_steps, sample_every=num_steps)
  return config


@pytest.fixture
def config():
  return tiny_config()
