"""The demo learns motion: held-out reconstruction beats the content-only baseline by at least 2x.

This runs the demo config to its full budget (a few minutes on 2 CPU cores) exactly as the README's first command
does, then reads the final held-out figures that training logged.
"""

import glob
import os

import pytest

from configs import demo
from tests.conftest import training_records
from vidstyleode_jax import train

pytestmark = pytest.mark.extended  # minutes of training: not in CI (pyproject.toml)


@pytest.mark.slow
def test_demo_halves_the_content_only_reconstruction_error(tmp_path):
  config = demo.get_config()
  state, eval_metrics = train.train(config, str(tmp_path), progress=False)
  assert int(state.step) == config.train.num_steps

  rec, baseline = eval_metrics["eval/rec_mse"], eval_metrics["eval/content_mse"]
  print(f"held-out reconstruction MSE {rec:.4f}, content-only baseline {baseline:.4f}, ratio {rec / baseline:.3f}")
  assert rec <= 0.5 * baseline

  steps = training_records(tmp_path)
  assert steps[-1]["step"] == config.train.num_steps
  assert all(line["ode/failed"] == 0 for line in steps)
  assert glob.glob(os.path.join(tmp_path, "tensorboard", "events.*"))
  last = f"step_{config.train.num_steps:07d}"
  assert os.path.getsize(tmp_path / "samples" / f"{last}.mp4") > 0
  assert os.path.getsize(tmp_path / "samples" / f"{last}.gif") > 0
