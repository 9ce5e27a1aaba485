"""`python -m vidstyleode_jax.evaluate` on the session's demo run: twice with the same seed (identical JSON), its
reconstruction scores against an independent reconstruction (inference.reconstruct, NumPy PSNR, scikit-image SSIM),
bad inputs (one line, exit 1, no output file), and the ablations CLI's call of the command
(ablations.evaluate_variant).

FVD and FID run on the real I3D and Inception weights of the installed packages, ported with `--from-package`; IS
on a random NVIDIA-layout Inception with logits (no real one is reachable), the warping error on a random-weight
RAFT small with 2 updates. Sizes are small: 3 videos, clips of 9 frames (I3D's minimum), batches of 2.
"""

import hashlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.metrics
import torch

from port_weights.__main__ import main as port_main
from tests.reference import nv_inception
from tests.reference import raft as raft_reference
from tests.test_port_i3d_inception import randomise
from tests.test_port_raft import reference_model
from vidstyleode_jax import ablations
from vidstyleode_jax import evaluate
from vidstyleode_jax import evaluation_plan
from vidstyleode_jax import files
from vidstyleode_jax import inference
from vidstyleode_jax import video_io
from vidstyleode_jax.apps import trained_run
from vidstyleode_jax.data import synthetic

CLIP_FRAMES = 9
NUM_VIDEOS = 3


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
  """{flag: ported folder} of the four metric networks."""
  root = tmp_path_factory.mktemp("metric_networks")
  assert port_main(["i3d", "--from-package", str(root / "i3d")]) == 0
  assert port_main(["inception", "--from-package", str(root / "inception")]) == 0
  inception_is = nv_inception.InceptionV3(channel_divisor=8).eval()
  randomise(inception_is, seed=0)
  torch.jit.script(inception_is).save(str(root / "inception-2015-12-05.pt"))
  assert port_main(["inception", str(root / "inception-2015-12-05.pt"), str(root / "inception_is")]) == 0
  torch.save(reference_model(raft_reference.SMALL, seed=0).state_dict(), root / "raft_small.pth")
  assert port_main(["raft", str(root / "raft_small.pth"), str(root / "raft")]) == 0
  return {flag: str(root / flag) for flag in ("i3d", "inception", "inception_is", "raft")}


def evaluate_args(workdir, networks, out, *more):
  args = ["--workdir", workdir, "--num_videos", NUM_VIDEOS, "--clip_frames", CLIP_FRAMES, "--batch_size", 2,
          "--is_splits", 1, "--raft_updates", 2, "--out", out, "--no_progress", *more]
  args += [f"--{flag}={folder}" for flag, folder in networks.items()]
  return [str(arg) for arg in args]


@pytest.fixture(scope="module")
def results(demo_run, networks, tmp_path_factory):
  """The demo run evaluated twice with the same seed: (first JSON text, second JSON text)."""
  root = tmp_path_factory.mktemp("evaluate")
  texts = []
  for attempt in range(2):
    out = root / f"evaluation_{attempt}.json"
    assert evaluate.main(evaluate_args(demo_run.workdir, networks, out)) == 0
    texts.append(out.read_text())
  return texts


@pytest.mark.slow
def test_same_seed_gives_the_same_file(results):
  assert results[0] == results[1]
  document = json.loads(results[0])
  assert document["skipped"] == {}
  assert set(document["metrics"]) == {"real", "reconstruction", "edit"}
  assert set(document["metrics"]["edit"]) == {"fvd", "fid", "is", "warping_error", "clip_accuracy",
                                              "clip_target_similarity", "clip_source_similarity"}
  assert document["counts"] == {"videos": NUM_VIDEOS, "frames_per_video": CLIP_FRAMES,
                                "frames": NUM_VIDEOS * CLIP_FRAMES}


@pytest.mark.slow
def test_protocol_names_the_networks_and_the_run(results, networks, demo_run):
  protocol = json.loads(results[0])["protocol"]
  assert protocol["run"]["step"] == demo_run.config.train.num_steps
  for metric, flag in evaluate.NETWORKS.items():
    with open(os.path.join(networks[flag], "variables.msgpack"), "rb") as f:
      assert protocol[metric]["network"]["variables_sha256"] == hashlib.sha256(f.read()).hexdigest()
  assert protocol["warp"]["flow_size"] == [128, 128]  # 32x32 frames, RAFT's minimum side


@pytest.mark.slow
def test_clips_targets_and_reconstruction_scores(results, demo_run):
  """The clips lie inside the videos with consecutive frames (the demo has no frame rate); every video is edited
  toward another's description; PSNR and SSIM equal those of an independent reconstruction of the same clips."""
  document = json.loads(results[0])
  videos = synthetic.VideoArrays.load(os.path.join(demo_run.workdir, files.DEMO_DATA_DIR, "eval.npz"))
  run = trained_run.load(demo_run.workdir)
  numbers = np.array([video["frame_numbers"] for video in document["videos"]])
  for v, video in enumerate(document["videos"]):
    assert np.array_equal(np.diff(numbers[v]), np.ones(CLIP_FRAMES - 1)) and numbers[v, -1] < videos.frames.shape[1]
    assert video["description"] == videos.descriptions[v]
    assert video["target"] in videos.descriptions[:NUM_VIDEOS] and video["target"] != video["description"]
  rows = np.arange(NUM_VIDEOS)[:, None]
  real, wplus = videos.frames[rows, numbers], videos.wplus[rows, numbers]
  times = jnp.asarray((numbers[0] - numbers[0, 0]) / run.config.data.video_length, jnp.float32)
  reconstruct = jax.jit(lambda frames01, w: inference.reconstruct(
      run.nets, run.params, run.frozen_vars, frames01, w, times, jnp.ones(frames01.shape[:2]), times)[1])
  rec = video_io.to_uint8(np.asarray(reconstruct(real / np.float32(255), wplus))).astype(np.float64) / 255.0
  real = real.astype(np.float64) / 255.0
  pairs = list(zip(rec.reshape((-1,) + rec.shape[2:]), real.reshape((-1,) + real.shape[2:])))
  psnr = [10 * np.log10(1.0 / np.mean(np.square(r - x))) for r, x in pairs]
  ssim = [skimage.metrics.structural_similarity(r, x, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                                sigma=1.5, use_sample_covariance=False) for r, x in pairs]
  scores = document["metrics"]["reconstruction"]
  print(f"rec PSNR {scores['psnr']:.4f} (independent {np.mean(psnr):.4f}), SSIM {scores['ssim']:.5f} "
        f"({np.mean(ssim):.5f})")
  np.testing.assert_allclose(scores["psnr"], np.mean(psnr), rtol=1e-3)
  np.testing.assert_allclose(scores["ssim"], np.mean(ssim), atol=1e-3)


def test_cycle_targets_is_a_seeded_derangement():
  for seed in range(5):
    targets = evaluation_plan.cycle_targets(7, seed)
    assert sorted(targets) == list(range(7)) and not np.any(targets == np.arange(7))
    order, video = [0], targets[0]
    while video != 0:
      order.append(video)
      video = targets[video]
    assert len(order) == 7  # one cycle through every video
  assert not np.array_equal(evaluation_plan.cycle_targets(7, 0), evaluation_plan.cycle_targets(7, 1))


def test_clip_offsets_sample_the_clip_rate():
  np.testing.assert_array_equal(evaluation_plan.clip_offsets(12, 30 / 10), np.arange(12) * 3)
  np.testing.assert_array_equal(evaluation_plan.clip_offsets(5, 25 / 10), [0, 3, 5, 8, 10])  # floor(2.5 k + 0.5)


BAD_INPUTS = {
    "a workdir without a checkpoint": (["--metrics", "rec"], "No checkpoints folder in"),
    "a split with fewer videos than requested": (["--metrics", "rec", "--num_videos", "5"], "holds only 4 videos"),
    "videos shorter than the clip": (["--metrics", "rec", "--clip_frames", "13"],
                                     "4 of the 4 evaluated videos are too short for a clip of 13 frames"),
    "a requested metric without its network": (["--metrics", "rec,fvd", "--i3d", "ported/nowhere"],
                                               "ported/nowhere not found: create it with `python -m port_weights i3d "
                                               "--from-package ported/nowhere`"),
    "a targets file with the wrong number of lines": (["--metrics", "clip_acc", "--targets", "TARGETS"],
                                                      "2 lines for 4 evaluated videos"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_writes_nothing(demo_run, tmp_path, capsys, case):
  more, expected = BAD_INPUTS[case]
  workdir = demo_run.workdir
  if case == "a workdir without a checkpoint":
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    shutil.copy(os.path.join(demo_run.workdir, files.CONFIG_FILE), workdir)
  (tmp_path / "targets.txt").write_text("a reddish figure\na bluish figure\n")
  more = [str(tmp_path / "targets.txt") if arg == "TARGETS" else arg for arg in more]
  out = tmp_path / "out" / "evaluation.json"
  out.parent.mkdir()
  assert evaluate.main(["--workdir", workdir, "--out", str(out), "--no_progress", *more]) == 1
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("evaluate: error: ") and expected in lines[0], err
  assert not os.listdir(out.parent)


def test_each_variant_is_scored_by_the_evaluate_command(demo_run, tmp_path):
  """evaluate_variant runs `python -m vidstyleode_jax.evaluate` with the given flags: its scores and its file are the
  command's own (run separately here), by set and metric."""
  common = ["--num_videos=2", "--clip_frames=9", "--batch_size=2", "--metrics=rec,clip_acc"]
  scores, skipped = ablations.evaluate_variant(demo_run.workdir, " ".join(common + [f"--out={tmp_path / 'a.json'}"]))
  assert evaluate.main(["--workdir", demo_run.workdir, *common, f"--out={tmp_path / 'b.json'}", "--no_progress"]) == 0
  document = json.loads((tmp_path / "b.json").read_text())
  assert scores == {f"{name} {metric}": value for name, values in document["metrics"].items()
                    for metric, value in values.items()}
  assert {"reconstruction psnr", "reconstruction ssim", "edit clip_accuracy"} <= set(scores)
  assert json.loads((tmp_path / "a.json").read_text())["metrics"] == document["metrics"]
  assert skipped == document["skipped"] == {}
