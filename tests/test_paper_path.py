"""The README's paper path, end to end, as a new user runs it: port -> prepare -> train -> applications.

Tiny networks are written in each original's on-disk format (an NV StyleGAN2-ADA pickle with conv_clamp 256 in the
StyleGAN-Human 2:1 layout, a rosinality .pt, two pSp .pt files, an OpenAI CLIP TorchScript archive with its BPE file,
a DINO .pth), and six real mp4 files of two aspect ratios with descriptions (one too long for CLIP, one missing).
Then the README's commands run as subprocesses from a fresh working directory, the paper configs given by absolute
path, with size overrides only: the architectures come from the ported folders. Deliberately broken inputs must
end with exit status 1 and one line on stderr, without a traceback.
"""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import torch

from tests.conftest import REPO
from tests.reference import dino_vit as dino_reference
from tests.reference import nv_stylegan2
from tests.reference import openai_clip as clip_reference
from tests.reference import psp_encoder
from tests.reference import rosinality_stylegan2
from tests.test_prepare import smooth_frames
from vidstyleode_jax import checkpointing
from vidstyleode_jax import text
from vidstyleode_jax import video_io
from vidstyleode_jax.apps import inputs as app_inputs
from vidstyleode_jax.data import inputs as data_inputs
from vidstyleode_jax.data import prepared
from vidstyleode_jax.models import frozen

pytestmark = pytest.mark.slow

CONTEXT = 16  # the tiny CLIP's context length: a description of more than 14 words is too long
EMBED = 16  # CLIP embedding = modulation width
FPS = 8.0
FRAMES = 16
DESCRIPTIONS = {
    "tall_0": "a woman in a red dress walks",
    "tall_1": "a woman in a blue dress turns",
    "tall_2": "a man in a green coat walks slowly",
    "wide_0": "a face smiles",
    "wide_1": "a face that talks and talks and talks and talks and talks and talks and talks and nods",  # too long
    "wide_2": None,  # no description
}
VIDEO_SIZES = {"tall": (64, 48), "wide": (40, 72)}  # height x width: two aspect ratios, none at a data size
PSP_DEPTHS = {"fashion": (16, 16, 32, 32), "ravdess": (16, 16, 32, 64)}  # pSp's W+ width is its last depth

# Only sizes are overridden; everything else is the paper config's or comes from the ported folders.
SIZES = {
    "data.batch_size": 2, "data.frames_per_clip": 6, "data.frames_decoded": 2, "data.num_eval_videos": 1,
    "data.read_threads": 1, "data.prefetch": 1,
    "dynamics.base_channels": 8, "dynamics.num_downsamples": 2, "dynamics.spatial_channels": 16,
    "dynamics.ode_hidden_channels": 16, "dynamics.max_steps": 64,
    "modulation.width": EMBED, "modulation.num_heads": 2, "modulation.num_self_layers": 1,
    "modulation.num_cross_layers": 1, "modulation.self_mlp_dim": 32, "modulation.cross_mlp_dim": 32,
    "mapper.group_sizes": "(2,3,3)", "mapper.group_depths": "(1,1,1)",
    "dino.short_side": 32, "dino.key_layer": 2, "dino.cls_layer": 1,
    "train.num_steps": 2, "train.log_every": 1, "train.checkpoint_every": 2, "train.sample_every": 2,
}
CONFIG_SIZES = {
    "fashion": {"data.height": 32, "data.width": 24, "dynamics.height": 16, "dynamics.width": 12,
                "modulation.num_dynamics_tokens": 12},
    "ravdess": {"data.height": 32, "data.width": 32, "dynamics.height": 16, "dynamics.width": 16,
                "modulation.num_dynamics_tokens": 16},
}


def config_flags(name, **more):
  overrides = {**SIZES, **CONFIG_SIZES[name], **more}
  return [f"--config={REPO}/configs/{name}.py"] + [f"--config.{key}={value}" for key, value in overrides.items()]


def run(args, cwd, expect=0):
  """Runs `python -m ...args` in `cwd`; returns the completed process after checking its exit status."""
  result = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO})
  assert result.returncode == expect, f"{args[:2]} exited {result.returncode}:\n{result.stderr[-3000:]}"
  return result


def write_sources(folder):
  """The tiny checkpoints in the originals' formats, and an OpenAI-format BPE file covering the test's words."""
  os.makedirs(folder)
  torch.manual_seed(0)
  human = nv_stylegan2.Generator(32, 32, 32, aspect=2, num_mapping_layers=2, channel_base=512, channel_max=16,
                                 conv_clamp=256.0)
  nv_stylegan2.randomize_(human, torch.Generator().manual_seed(1))
  nv_stylegan2.write_network_pickle(f"{folder}/stylegan_human_v2_1024.pkl", human)
  # The demo generator's sizes with one mapping layer more: the demo config must refuse it, naming n_mlp.
  ffhq = rosinality_stylegan2.Generator(32, style_dim=64, n_mlp=3, channel_divisor=32)
  torch.save({"g_ema": ffhq.state_dict(), "latent_avg": torch.randn(64)}, f"{folder}/stylegan2-ffhq-config-f.pt")
  for name, depths in PSP_DEPTHS.items():
    encoder = psp_encoder.GradualStyleEncoder(depths, n_styles=8)
    psp_encoder.randomize_(encoder, torch.Generator().manual_seed(2))
    decoder = rosinality_stylegan2.Generator(32, style_dim=depths[-1], n_mlp=2, channel_divisor=32)
    net = psp_encoder.PSP(encoder, decoder, torch.randn(8, depths[-1]))
    opts = dict(encoder_type="GradualStyleEncoder", input_nc=3, label_nc=0, output_size=32, start_from_latent_avg=True,
                learn_in_w=False, dataset_type="ffhq_encode")
    torch.save({"state_dict": net.state_dict(), "opts": opts, "latent_avg": net.latent_avg}, f"{folder}/psp_{name}.pt")

  vocabulary = os.path.join(folder, "vocabulary")
  vocab_size = text.write_vocabulary_of(vocabulary, [d for d in DESCRIPTIONS.values() if d])
  with open(os.path.join(vocabulary, "merges.txt"), encoding="utf-8") as f:
    merges = f.read().splitlines()[1:]
  with gzip.open(f"{folder}/bpe_simple_vocab_16e6.txt.gz", "wt", encoding="utf-8") as f:
    f.write("#version: tiny\n" + "".join(line + "\n" for line in merges))
  clip = clip_reference.CLIP(embed_dim=EMBED, image_size=32, vision_patch_size=8, vision_width=64, vision_layers=1,
                             vocab_size=vocab_size, context_length=CONTEXT, text_width=64, text_layers=1).eval()
  for name, value in (("input_resolution", 32), ("context_length", CONTEXT), ("vocab_size", vocab_size)):
    clip.register_buffer(name, torch.tensor(value))
  example = (torch.zeros(1, 3, 32, 32), torch.zeros(1, CONTEXT, dtype=torch.long))
  torch.jit.trace(clip, example, check_trace=False).save(f"{folder}/ViT-B-32.pt")
  dino = dino_reference.VisionTransformer(patch_size=8, width=128, depth=3, mlp_dim=256, image_size=32).eval()
  torch.save(dino.state_dict(), f"{folder}/dino_vitbase16_pretrain.pth")


def write_videos(folder):
  os.makedirs(folder)
  for seed, (name, description) in enumerate(DESCRIPTIONS.items()):
    video_io.write_mp4(f"{folder}/{name}.mp4", smooth_frames(seed, FRAMES, *VIDEO_SIZES[name.split("_")[0]]), FPS)
    if description is not None:
      with open(f"{folder}/{name}.txt", "w") as f:
        f.write(description + "\n")


PORTS = [
    ("stylegan2-ada", "stylegan_human_v2_1024.pkl", "stylegan_human_v2_1024"),
    ("stylegan2", "stylegan2-ffhq-config-f.pt", "stylegan2_ffhq_1024"),
    ("clip", "ViT-B-32.pt", "clip_vit_b32", "--bpe", "sources/bpe_simple_vocab_16e6.txt.gz"),
    ("dino", "dino_vitbase16_pretrain.pth", "dino_vitb16"),
    ("psp", "psp_fashion.pt", "psp_stylegan_human"),
    ("psp", "psp_ravdess.pt", "psp_ffhq_encode"),
    ("clip", "ViT-B-32.pt", "clip_without_bpe"),
]


@pytest.fixture(scope="module")
def user(tmp_path_factory):
  """A user's working directory after porting, preparing and training both paper configs (README commands)."""
  cwd = tmp_path_factory.mktemp("user")
  write_sources(cwd / "sources")
  write_videos(cwd / "videos")
  logs = {}
  for kind, source, destination, *options in PORTS:
    logs[destination] = run(["port_weights", kind, f"sources/{source}", f"ported/{destination}", *options], cwd)
  for name, psp in (("fashion", "ported/psp_stylegan_human"), ("ravdess", None)):
    logs[f"prepare {name}"] = run(["vidstyleode_jax.data.prepare", *config_flags(name), "--videos=videos",
                                   f"--out=data/{name}", "--batch_size=8", "--noprogress"]
                                  + ([f"--psp={psp}"] if psp else []), cwd)
    logs[f"train {name}"] = run(["vidstyleode_jax.train", *config_flags(name), f"--config.data.dataset_dir=data/{name}",
                                 f"--workdir=runs/{name}", "--noprogress"], cwd)
  return cwd, logs


def test_ports_record_the_architectures(user):
  cwd, logs = user
  assert "'conv_clamp': 256.0" in logs["stylegan_human_v2_1024"].stdout
  for _, _, destination, *_ in PORTS:
    assert os.path.isfile(cwd / "ported" / destination / "architecture.json")
  assert os.path.isfile(cwd / "ported" / "clip_vit_b32" / "vocab.json")
  assert not os.path.exists(cwd / "ported" / "clip_without_bpe" / "vocab.json")


def test_prepare_reports_the_bad_videos_and_warns_about_the_square_psp(user):
  cwd, logs = user
  for name in ("fashion", "ravdess"):
    with open(cwd / "data" / name / "report.tsv") as f:
      report = f.read()
    assert "wide_1.mp4" in report and "more than clip.context_length=16" in report, report
    assert "wide_2.mp4" in report and "no description" in report, report
    splits = {split: len(prepared.open_split(str(cwd / "data" / name), split)) for split in ("train", "test")}
    assert splits["train"] + splits["test"] == 4 and splits["test"] >= 1
  warning = "warning: the pSp in ported/psp_stylegan_human was trained with a 32x32 decoder"
  assert warning in logs["prepare fashion"].stderr
  assert "warning" not in logs["prepare ravdess"].stderr


def test_training_resolves_the_ported_architectures(user):
  cwd, _ = user
  for name, conv_clamp in (("fashion", 256.0), ("ravdess", None)):
    assert sorted(os.listdir(cwd / "runs" / name / "checkpoints")) == ["2"]
    config = checkpointing.read_config(str(cwd / "runs" / name))
    assert config.generator.get("conv_clamp") == conv_clamp
    assert config.clip.context_length == CONTEXT


def frame_count(path):
  return len(video_io.read_video(str(path))[0])


# The first config.data.skip_frames = 5 frames of the fashion config are dropped by prepare and by the apps alike.
KEPT = FRAMES - 5
APPLICATIONS = {
    "edit": (["--video", "videos/tall_0.mp4", "--source", "a woman in a red dress walks", "--target",
              "a woman in a blue dress walks"], KEPT),
    "animate": (["--image", "frame.png", "--driving", "videos/tall_1.mp4"], KEPT),
    "interpolate": (["--video", "videos/tall_0.mp4", "--fps", 2 * FPS, "--keep-every", 2], 2 * KEPT - 1),
    "extrapolate": (["--video", "videos/wide_0.mp4", "--seconds", 0.5], KEPT + 4),
    "transfer-motion": (["--video", "videos/tall_0.mp4", "--driving", "videos/tall_2.mp4", "--region", "0,0,24,64"],
                        KEPT),
    "blend-motion": (["--video", "videos/tall_0.mp4", "--video-b", "videos/wide_0.mp4", "--lambda", 0.5], KEPT),
}


@pytest.mark.parametrize("command", APPLICATIONS)
def test_applications_on_native_size_videos_with_psp(user, command):
  cwd, _ = user
  if command == "animate":
    Image.fromarray(smooth_frames(9, 1, 60, 44)[0]).save(cwd / "frame.png")
  args, frames = APPLICATIONS[command]
  output = cwd / "out" / f"{command}.mp4"
  output.parent.mkdir(exist_ok=True)
  run(["vidstyleode_jax.apps", command, "--workdir", "runs/fashion", "--psp", "ported/psp_stylegan_human", *args,
       "--output", output, "--no-progress"], cwd)
  assert frame_count(output) == frames


def test_apps_invert_the_pixels_prepare_inverts(user):
  """A 64x48 video through `prepare` and through the apps' input path gives bit-identical frames and W+."""
  cwd, _ = user
  split = next(s for s in (prepared.open_split(str(cwd / "data" / "fashion"), name) for name in ("train", "test"))
               if "tall_0" in s.names)
  record = split[split.names.index("tall_0")]
  config = checkpointing.read_config(str(cwd / "runs" / "fashion"))  # the trained run's resolved config
  generator = frozen.network("generator", config)
  video = app_inputs.read_video(str(cwd / "videos" / "tall_0.mp4"), data_inputs.FrameFormat.of(config))
  inversions = app_inputs.Inversions(generator.n_latent, generator.style_dim,
                                     str(cwd / "ported" / "psp_stylegan_human"))
  wplus = inversions(video, None, "--inversions")
  np.testing.assert_array_equal(video.frames, record["frames"])
  np.testing.assert_array_equal(wplus, record["wplus"])


BROKEN = {
    "CLIP ported without --bpe": (
        ["vidstyleode_jax.train", *config_flags("fashion"), "--config.data.dataset_dir=data/fashion",
         "--config.clip.checkpoint=ported/clip_without_bpe", "--workdir=runs/broken"],
        "train: error: no CLIP tokenizer in ported/clip_without_bpe"),
    "a ported generator whose n_mlp the config contradicts": (
        ["vidstyleode_jax.train", f"--config={REPO}/configs/demo.py", "--workdir=runs/broken",
         "--config.generator.checkpoint=ported/stylegan2_ffhq_1024"],
        "train: error: generator.n_mlp=2 in the config, but ported/stylegan2_ffhq_1024/architecture.json has n_mlp=3"),
    "an override of a field the port owns": (
        ["vidstyleode_jax.train", *config_flags("fashion"), "--config.generator.conv_clamp=256", "--workdir=runs/b"],
        "train: error: a --config.* flag names a field the config does not have: conv_clamp;"),
    "a DINO folder holding CLIP": (
        ["vidstyleode_jax.apps", "extrapolate", "--workdir", "runs/broken_dino", "--video", "videos/tall_0.mp4",
         "--psp", "ported/psp_stylegan_human", "--seconds", "1", "--output", "out/x.mp4"],
        "apps: error: dino.checkpoint=ported/clip_vit_b32 holds ported weights of kind 'clip'"),
    "a description longer than CLIP's context": (
        ["vidstyleode_jax.apps", "edit", "--workdir", "runs/fashion", "--video", "videos/tall_0.mp4", "--psp",
         "ported/psp_stylegan_human", "--source", "a face", "--target", DESCRIPTIONS["wide_1"], "--output",
         "out/x.mp4"], "apps: error: --source/--target: text"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_inputs_end_with_one_line(user, case):
  cwd, _ = user
  if case == "a DINO folder holding CLIP":
    os.makedirs(cwd / "runs" / "broken_dino", exist_ok=True)
    config = (cwd / "runs" / "fashion" / "config.json").read_text()
    config = config.replace("ported/dino_vitb16", "ported/clip_vit_b32")
    (cwd / "runs" / "broken_dino" / "config.json").write_text(config)
  os.makedirs(cwd / "out", exist_ok=True)
  args, expected = BROKEN[case]
  result = run(args, cwd, expect=1)
  lines = result.stderr.strip().splitlines()
  assert "Traceback" not in result.stderr, result.stderr
  assert len(lines) == 1 and lines[0].startswith(expected), result.stderr


def test_evaluate_the_held_out_split(user):
  """`python -m vidstyleode_jax.evaluate` on the fashion run's prepared test split, with a targets file: clips of 6
  frames at 4 fps from the 8 fps videos (every other kept frame), the JSON at its default place."""
  cwd, _ = user
  (cwd / "targets.txt").write_text("a man in a red coat turns\n")
  run(["vidstyleode_jax.evaluate", "--workdir=runs/fashion", "--metrics=rec,clip_acc", "--targets=targets.txt",
       "--clip_frames=6", "--clip_fps=4", "--no_progress"], cwd)
  with open(cwd / "runs" / "fashion" / "evaluation_test.json") as f:
    document = json.load(f)
  test_split = prepared.open_split(str(cwd / "data" / "fashion"), "test")
  assert document["counts"]["videos"] == len(test_split)
  assert [video["name"] for video in document["videos"]] == list(test_split.names)
  for video in document["videos"]:
    assert video["frame_numbers"] == list(range(0, KEPT, 2)) and video["target"] == "a man in a red coat turns"
  assert document["protocol"]["clip"]["source_fps"] == [FPS]
  assert 0 < document["metrics"]["reconstruction"]["ssim"] < 1
  correct = document["metrics"]["edit"]["clip_accuracy"] * len(test_split)  # a count of videos
  assert correct == round(correct) and 0 <= correct <= len(test_split)
