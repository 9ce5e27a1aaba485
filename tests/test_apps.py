"""The applications (python -m vidstyleode_jax.apps) on a tiny demo run trained for 2 steps.

Equalities hold for any params: they compare the applications with references composed here from
inference.reconstruct and the model's encode / solve / latents, using the params train.train returned (not the
checkpoint the applications restore) and the frames the applications read (the exported mp4s, decoded by ffmpeg).
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests import test_prepare
from tests.conftest import DEMO_EXPORT_FPS
from tests.conftest import tiny_config
from vidstyleode_jax import config_validation
from vidstyleode_jax import inference
from vidstyleode_jax import video_io
from vidstyleode_jax.apps import __main__ as cli
from vidstyleode_jax.apps import applications
from vidstyleode_jax.apps import inputs
from vidstyleode_jax.apps import timeline
from vidstyleode_jax.apps import renderer as renderer_lib
from vidstyleode_jax.apps import trained_run
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import frozen as frozen_lib
from vidstyleode_jax.models.psp import PSPEncoder

TOLERANCE = 1e-5


class Run:
  """The session's trained demo run (conftest.demo_run), its exported videos and the independent reference pieces."""

  def __init__(self, demo_run):
    self.config, self.workdir, self.export, self.params = (demo_run.config, demo_run.workdir, demo_run.export,
                                                           demo_run.params)
    self.path = demo_run.path
    self.nets = inference.Networks.from_config(config_validation.resolve(self.config))
    self.frozen_vars = frozen_lib.load_or_init(self.nets.frozen, self.nets.config,
                                               jax.random.key(self.config.seed + 1))
    self.renderer = renderer_lib.Renderer(trained_run.load(self.workdir), batch_frames=4, resolution="data",
                                          progress=False)

  def video(self, k):
    """(frames01 [1, T, H, W, 3] as ffmpeg decodes demo_k.mp4, wplus [1, T, ...], times [T])."""
    frames, fps = video_io.read_video(self.path(f"demo_{k}.mp4"))
    assert fps == DEMO_EXPORT_FPS
    times = (np.arange(len(frames)) / self.config.data.video_length).astype(np.float32)
    return frames[None].astype(np.float32) / 255.0, np.load(self.path(f"demo_{k}.npy"))[None], times

  def reconstruction(self, k):
    frames01, wplus, times = self.video(k)
    mask = jnp.ones(frames01.shape[:2])
    return np.asarray(inference.reconstruct(self.nets, self.params, self.frozen_vars, frames01, wplus, times, mask,
                                            times)[1][0])

  def with_motion_of(self, content_wplus, motion_k, query_times):
    """Frames with the content and style of content_wplus [1, T', ...] and the z0 of video motion_k."""
    model = self.nets.model
    frames01, _, times = self.video(motion_k)
    z0 = model.apply(self.params, inference.dynamics_input(self.nets, frames01), times, jnp.ones(frames01.shape[:2]),
                     method=model.encode)
    content = jnp.mean(content_wplus, axis=1)
    style = self.nets.frozen.clip_image(self.frozen_vars, self.nets.frozen.render(self.frozen_vars, content))
    z_t, _ = model.apply(self.params, z0, query_times, method=model.solve)
    w = model.apply(self.params, z_t, content, style, method=model.latents)
    return np.asarray(inference.render_frames(self.nets, self.frozen_vars, w)[1][0])

  def read(self, k):
    frame_format = self.renderer.run.frame_format
    return inputs.read_video(self.path(f"demo_{k}.mp4"), frame_format), np.load(self.path(f"demo_{k}.npy"))


@pytest.fixture(scope="module")
def run(demo_run):
  return Run(demo_run)


def assert_close(actual, expected):
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


def test_export_demo_writes_the_exact_inversions(run):
  with np.load(os.path.join(run.workdir, "demo_data", "eval.npz")) as f:
    np.testing.assert_array_equal(np.load(run.path("demo_1.npy")), f["wplus"][1])
    np.testing.assert_array_equal(np.load(run.path("demo_1_frame0.npy")), f["wplus"][1, :1])
    np.testing.assert_array_equal(np.asarray(Image.open(run.path("demo_1_frame0.png"))), f["frames"][1, 0])
    assert open(run.path("demo_1.txt")).read().strip() == str(f["descriptions"][1])


def test_edit_with_alpha_zero_is_the_reconstruction(run):
  video, wplus = run.read(0)
  tokenizer = run.renderer.run.tokenizer()
  result = applications.edit(run.renderer, video, wplus, tokenizer("a reddish figure"), tokenizer("a bluish figure"),
                             0.0)
  assert_close(result.frames, run.reconstruction(0))


def test_edit_with_a_text_direction_changes_the_frames(run):
  video, wplus = run.read(0)
  tokenizer = run.renderer.run.tokenizer()
  edited = applications.edit(run.renderer, video, wplus, tokenizer("a reddish figure"), tokenizer("a bluish figure"),
                             2.0).frames
  assert np.abs(edited - run.reconstruction(0)).max() > 1e-3


def test_psp_inverts_the_frames_the_application_reads(run, tmp_path):
  """--psp DIR gives what --inversions gives with W+ from the encoder applied directly to the decoded frames."""
  psp_dir = str(tmp_path / "psp")
  variables = test_prepare.write_tiny_psp(psp_dir)
  video, _ = run.read(0)
  images = video.frames.astype(np.float32) / 127.5 - 1.0  # 32x32: already the encoder's input size
  np.save(tmp_path / "direct.npy", np.asarray(PSPEncoder(**test_prepare.ENCODER_FIELDS).apply(variables, images)))
  outputs = {}
  for name, flags in (("psp", ["--psp", psp_dir]), ("direct", ["--inversions", str(tmp_path / "direct.npy")])):
    raw = str(tmp_path / f"{name}.npy")
    assert cli.main(["edit", "--workdir", run.workdir, "--video", run.path("demo_0.mp4"), *flags, "--source",
                     "a reddish figure", "--target", "a bluish figure", "--alpha", "1", "--resolution", "data",
                     "--output", str(tmp_path / f"{name}.mp4"), "--save-frames", raw, "--no-progress"]) == 0
    outputs[name] = np.load(raw)
  assert_close(outputs["psp"], outputs["direct"])


def test_interpolate_at_the_observed_frames_is_the_reconstruction(run):
  video, wplus = run.read(0)
  positions = np.arange(len(video))
  result = applications.interpolate(run.renderer, video, wplus, positions, video.fps, np.ones(len(video)))
  assert_close(result.frames, run.reconstruction(0))


def test_interpolate_at_double_fps_keeps_the_observed_frames(run, tmp_path):
  output, raw = str(tmp_path / "double.mp4"), str(tmp_path / "double.npy")
  assert cli.main(["interpolate", "--workdir", run.workdir, "--video", run.path("demo_0.mp4"), "--inversions",
                   run.path("demo_0.npy"), "--fps", str(2 * DEMO_EXPORT_FPS), "--resolution", "data",
                   "--output", output, "--save-frames", raw, "--side-by-side", "--no-progress"]) == 0
  frames, fps = video_io.read_video(output)
  count = run.config.data.frames_per_video
  assert frames.shape == (2 * count - 1, 32, 32, 3) and fps == 2 * DEMO_EXPORT_FPS
  assert video_io.read_video(str(tmp_path / "double_compare.mp4"))[0].shape[0] == 2 * count - 1
  assert_close(np.load(raw)[::2], run.reconstruction(0))


def test_extrapolate_adds_the_requested_seconds(run, tmp_path):
  output = str(tmp_path / "more.mp4")
  assert cli.main(["extrapolate", "--workdir", run.workdir, "--video", run.path("demo_0.mp4"), "--inversions",
                   run.path("demo_0.npy"), "--seconds", "0.5", "--output", output, "--no-progress"]) == 0
  frames, fps = video_io.read_video(output)
  assert frames.shape[0] == run.config.data.frames_per_video + 4 and fps == DEMO_EXPORT_FPS


def test_hidden_frames_do_not_reach_the_encoder(run):
  """Frames hidden by the mask may hold anything: z0 and the decoded frames stay bit-identical. Hiding them does
  change z0 (checked on z0 itself: the demo's decoder barely depends on it, docs/model.md §21.9)."""
  video, wplus = run.read(0)
  mask = applications.observation_mask(len(video), keep_every=2)
  scrambled = inputs.Video(np.where(mask[:, None, None, None] > 0, video.frames, 255 - video.frames), video.native_size,
                           video.fps, video.path)
  times = timeline.frame_times(len(video), run.config.data.video_length)
  encode = lambda v, m: np.asarray(run.renderer.encode(v.frames01, times, m))
  z0_hidden, z0_all = encode(video, mask[None]), encode(video, None)
  np.testing.assert_array_equal(encode(scrambled, mask[None]), z0_hidden)
  assert np.abs(z0_hidden - z0_all).max() > 1e-3 * np.abs(z0_all).max()
  positions = np.arange(len(video))
  hidden_garbage = applications.interpolate(run.renderer, scrambled, wplus, positions, video.fps, mask).frames
  hidden = applications.interpolate(run.renderer, video, wplus, positions, video.fps, mask).frames
  np.testing.assert_array_equal(hidden_garbage, hidden)


def test_animate_takes_the_image_content_and_the_driving_motion(run):
  image = inputs.read_image(run.path("demo_0_frame0.png"), run.renderer.run.frame_format)
  image_wplus = np.load(run.path("demo_0_frame0.npy"))
  driving, _ = run.read(1)
  result = applications.animate(run.renderer, image, image_wplus, driving)
  assert_close(result.frames, run.with_motion_of(image_wplus[None], 1, run.video(1)[2]))


@pytest.mark.parametrize("full", [True, False])
def test_transfer_motion_full_and_empty_region(run, full):
  video, wplus = run.read(0)
  driving, _ = run.read(1)
  region = np.full(video.native_size, full)
  result = applications.transfer_motion(run.renderer, video, wplus, driving, region)
  expected = run.with_motion_of(wplus[None], 1, run.video(0)[2]) if full else run.reconstruction(0)
  assert_close(result.frames, expected)


def test_transfer_motion_of_a_half_region_mixes_both(run):
  video, wplus = run.read(0)
  driving, _ = run.read(1)
  region = np.zeros(video.native_size, bool)
  region[:, :16] = True
  frames = applications.transfer_motion(run.renderer, video, wplus, driving, region).frames
  for expected in (run.reconstruction(0), run.with_motion_of(wplus[None], 1, run.video(0)[2])):
    assert np.abs(frames - expected).max() > 1e-5


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_blend_motion_endpoints(run, weight):
  video, wplus = run.read(0)
  video_b, _ = run.read(1)
  result = applications.blend_motion(run.renderer, video, wplus, video_b, weight)
  expected = run.reconstruction(0) if weight == 0 else run.with_motion_of(wplus[None], 1, run.video(0)[2])
  assert_close(result.frames, expected)


def garbage_video(tmp_path):
  path = tmp_path / "x.mp4"
  path.write_bytes(b"this is not a video" * 100)
  return str(path)


def other_config(tmp_path, **modulation):
  config = tiny_config(num_steps=2)
  config.modulation.update(modulation)
  path = tmp_path / "other.json"
  path.write_text(config.to_json_best_effort())
  return str(path)


def without_config_json(run, tmp_path):
  workdir = tmp_path / "copied_run"
  shutil.copytree(os.path.join(run.workdir, "checkpoints"), workdir / "checkpoints")
  return str(workdir)


BAD_INPUTS = {
    "missing file": (lambda run, tmp: ["edit", "--video", str(tmp / "nope.mp4")], "nope.mp4"),
    "unreadable video": (lambda run, tmp: ["edit", "--video", garbage_video(tmp)], "x.mp4"),
    "region outside the frame": (lambda run, tmp: ["transfer-motion", "--video", run.path("demo_0.mp4"), "--driving",
                                                   run.path("demo_1.mp4"), "--region", "10,10,40,20"], "--region"),
    "empty target": (lambda run, tmp: ["edit", "--video", run.path("demo_0.mp4"), "--target", "  "], "--target"),
    "--config for a run with config.json": (lambda run, tmp: ["edit", "--video", run.path("demo_0.mp4"), "--config",
                                                              other_config(tmp, cross_mlp_dim=64)],
                                            "the run has its own config"),
    "a checkpoint of another config": (
        lambda run, tmp: ["edit", "--video", run.path("demo_0.mp4"), "--workdir", without_config_json(run, tmp),
                          "--config", other_config(tmp, cross_mlp_dim=64)], "but the config builds"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_fail_clearly_and_write_nothing(run, tmp_path, capsys, case):
  make_args, expected_text = BAD_INPUTS[case]
  output = tmp_path / "out" / "result.mp4"
  output.parent.mkdir()
  args = make_args(run, tmp_path)
  defaults = {"--workdir": run.workdir, "--inversions": run.path("demo_0.npy"), "--source": "a reddish figure",
              "--target": "a bluish figure"}
  for flag, value in defaults.items():
    if flag not in args and not (flag in ("--source", "--target") and args[0] != "edit"):
      args += [flag, value]
  assert cli.main(args + ["--output", str(output), "--no-progress"]) == 1
  message = capsys.readouterr().err.strip()
  assert message.startswith("apps: error: ") and "\n" not in message and expected_text in message, message
  assert os.listdir(output.parent) == []


def test_checkpoint_shape_mismatch_names_the_parameter(run, tmp_path):
  workdir = without_config_json(run, tmp_path)
  with pytest.raises(UserError, match=r"parameter params/\S+ has shape \(\d.*\) in .* but the config "
                     r"builds \(\d"):
    trained_run.load(workdir, other_config(tmp_path, cross_mlp_dim=64))


def test_config_json_round_trip_rebuilds_the_same_model(run):
  with open(os.path.join(run.workdir, "config.json")) as f:
    saved = json.load(f)
  assert saved["modulation"]["width"] == run.config.modulation.width
  as_json = lambda config: json.loads(config.to_json_best_effort())
  assert as_json(trained_run.load(run.workdir).config) == as_json(config_validation.resolve(run.config))


@pytest.mark.smoke
def test_help_names_every_subcommand_and_the_time_unit():
  result = subprocess.run([sys.executable, "-m", "vidstyleode_jax.apps", "--help"], capture_output=True, text=True,
                          cwd=REPO, check=True)
  for name in ("edit", "animate", "interpolate", "extrapolate", "transfer-motion", "blend-motion", "export-demo"):
    assert name in result.stdout
  assert "video_length" in result.stdout
