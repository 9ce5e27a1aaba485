"""`python -m vidstyleode_jax.data.prepare`: real mp4 files and PNG frame folders -> a prepared dataset, checked
against the source frames, an independent call of the pSp encoder and the official inversion files; bad inputs;
kill and resume; the official-layout import.

Sizes are tiny: 32x24 frames, a random pSp encoder (stages 16/16/32/32, one unit each, 32x32 input) writing the W+
[8, 64] of the demo generator, skip_frames 2 and 6 frames per clip (so a video needs 8 frames).
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO
from port_weights import output as port_output
from tests.conftest import tiny_config
from vidstyleode_jax import video_io
from vidstyleode_jax.data import inputs
from vidstyleode_jax.data import prepare
from vidstyleode_jax.data import prepared
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import frozen
from vidstyleode_jax.models.psp import PSPEncoder
from vidstyleode_jax.models.stylegan2 import Generator

HEIGHT, WIDTH = 32, 24
SKIP_FRAMES, FRAMES_PER_CLIP = 2, 6
WPLUS_SHAPE = (8, 64)  # the demo generator: 2 * log2(32) - 2 rows of style_dim 64
ENCODER_FIELDS = dict(n_styles=8, style_dim=64, stage_channels=(16, 16, 32, 32), stage_units=(1, 1, 1, 1),
                      input_size=32)
# mean |decoded - source| in uint8 levels after the same resize (x264 crf 18, yuv420p); measured at most 1.71
CODEC_MEAN_ABS_LEVELS = 3.0
CONFIG_FILE = """
from tests.conftest import tiny_config


def get_config():
  config = tiny_config()
  config.data.update(height={height}, width={width}, skip_frames={skip})
  config.psp = dict(checkpoint={psp!r})
  return config
"""
NON_ASCII = "une robe rouge à pois — 赤いドレス"


def smooth_frames(seed, num_frames, height, width):
  """[t, h, w, 3] uint8 smooth moving colour waves (an easy signal for the codec)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  freq, phase = rng.uniform(0.5, 1.5, (2, 3)), rng.uniform(0, 2 * np.pi, 3)
  frames = [127.5 + 90 * np.sin(2 * np.pi * (freq[0] * x[..., None] + freq[1] * y[..., None]) + phase + 0.4 * t)
            for t in range(num_frames)]
  return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def expected_frames(source_frames):
  return inputs.FrameFormat(HEIGHT, WIDTH).frames(source_frames, skip=False)[0]


def write_tiny_psp(path, seed=0, decoder_aspect=1):
  """A random tiny PSPEncoder written as a ported folder (the layout of `python -m port_weights psp`).

  Its decoder entry describes the demo generator (aspect 1), or a decoder of another aspect ratio; the decoder's
  weights are left out, since inversion reads only the encoder's.
  """
  encoder = PSPEncoder(**ENCODER_FIELDS)
  variables = jax.jit(encoder.init)(jax.random.PRNGKey(seed), np.zeros((1, 32, 32, 3), np.float32))
  variables = jax.tree.map(np.asarray, dict(variables))
  variables["latent_avg"]["w_plus"] = np.random.default_rng(seed).normal(size=WPLUS_SHAPE).astype(np.float32)
  decoder = dict(tiny_config().generator, aspect=decoder_aspect)
  decoder_fields = {field: decoder[field] for field in frozen.architecture_fields(Generator) if field in decoder}
  architecture = {"kind": "psp", "module": "vidstyleode_jax.models.psp.PSPEncoder", "fields": ENCODER_FIELDS,
                  "decoder": {"module": "vidstyleode_jax.models.stylegan2.Generator", "fields": decoder_fields}}
  source = str(path) + ".source"
  with open(source, "w") as f:
    f.write("tiny test encoder")
  port_output.write(port_output.Ported(variables=variables, architecture=architecture), source, str(path))
  return variables


def write_config(folder, psp_dir, name="config.py"):
  path = os.path.join(folder, name)
  with open(path, "w") as f:
    f.write(CONFIG_FILE.format(height=HEIGHT, width=WIDTH, skip=SKIP_FRAMES, psp=str(psp_dir)))
  return path


def write_frame_folder(folder, frames, numbers, descriptions=None, pattern="img_{:03d}.png"):
  os.makedirs(folder, exist_ok=True)
  for frame, number in zip(frames, numbers):
    Image.fromarray(frame).save(os.path.join(folder, pattern.format(number)))
  if descriptions is not None:
    with open(os.path.join(folder, inputs.FOLDER_DESCRIPTION_FILE), "w", encoding="utf-8") as f:
      f.write("\n".join(descriptions) + "\n")


def write_video_file(folder, name, frames, fps, descriptions=None):
  video_io.write_mp4(os.path.join(folder, name + ".mp4"), frames, fps)
  if descriptions is not None:
    with open(os.path.join(folder, name + ".txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(descriptions) + "\n")


def run_prepare(*args):
  return prepare.main(["prepare", "--progress=false", *map(str, args)])


def read_report(out):
  with open(os.path.join(out, prepare.REPORT_FILE), encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t"))
  assert rows[0] == ["input", "reason"]
  return dict(rows[1:])


def read_dataset(out):
  """{split: {name: example dict}} with text fields decoded."""
  with open(os.path.join(prepared.builder_dir(out), "dataset_info.json")) as f:
    info = json.load(f)
  dataset = {}
  for split in [split["name"] for split in info["splits"]]:
    opened = prepared.open_split(out, split)
    dataset[split] = {}
    for i, name in enumerate(opened.names):
      example = dict(opened[i])
      example["descriptions"] = [d.decode("utf-8") for d in example["descriptions"]]
      example["name"] = example["name"].decode("utf-8")
      assert example["name"] == name
      assert example["descriptions"] == list(opened.descriptions[i])
      np.testing.assert_array_equal(example["frame_index"], opened.frame_index[i])
      assert example["fps"] == opened.fps[i]
      dataset[split][name] = example
  return dataset


# The main input folder: 10 mp4 files (two source sizes and aspects, three frame rates) and 4 frame folders.
VIDEO_SPECS = [(f"clip_{i:02d}", 9 + i % 4, (96, 80) if i % 2 else (80, 128), (10.0, 12.5, 25.0)[i % 3])
               for i in range(10)]
FOLDER_NUMBERS = {"frames_a": list(range(0, 20, 2)), "frames_b": [1, 2, 3, 10, 11, 12, 20, 100],
                  "frames_c": list(range(5, 15)), "frames_d": list(range(9))}


def video_descriptions(name):
  return [f"{name} walking", NON_ASCII] if name.endswith("1") else [f"{name} turning around"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  """The input folders, a tiny pSp, a config, and the dataset prepared from them in one run."""
  root = tmp_path_factory.mktemp("prepare")
  videos = root / "videos"
  videos.mkdir()
  source_frames = {}
  for seed, (name, num_frames, (height, width), fps) in enumerate(VIDEO_SPECS):
    source_frames[name] = smooth_frames(seed, num_frames, height, width)
    own_descriptions = None if name == "clip_09" else video_descriptions(name)
    write_video_file(videos, name, source_frames[name], fps, own_descriptions)
  for seed, (name, numbers) in enumerate(FOLDER_NUMBERS.items(), start=100):
    source_frames[name] = smooth_frames(seed, len(numbers), 36, 30)
    write_frame_folder(videos / name, source_frames[name], numbers, video_descriptions(name),
                       pattern="{}.png" if name == "frames_b" else "img_{:03d}.png")
  table = {"clip_09": ["from the table"], "clip_00": ["the table wins", "second line"]}
  (root / "descriptions.json").write_text(json.dumps(table), encoding="utf-8")
  psp_dir = root / "psp"
  variables = write_tiny_psp(psp_dir)
  config = write_config(root, psp_dir)
  args = [f"--config={config}", f"--videos={videos}", f"--descriptions={root / 'descriptions.json'}",
          "--test_fraction=0.25", "--batch_size=4"]
  out = root / "one_run"
  assert run_prepare(*args, f"--out={out}") == 0
  return dict(root=root, videos=videos, frames=source_frames, variables=variables, args=args, out=out,
              table=table, config=config, psp=psp_dir)


def test_real_videos(sources):
  dataset = read_dataset(sources["out"])
  names = sorted(name for split in dataset.values() for name in split)
  assert names == sorted(sources["frames"])
  train, test = inputs.hash_split(names, 0.25)
  assert sorted(dataset) == ["test", "train"]
  assert sorted(dataset["train"]) == train and sorted(dataset["test"]) == test and len(test) == 4
  assert read_report(sources["out"]) == {}
  assert not os.path.exists(os.path.join(sources["out"], prepare.WORK_DIR))

  specs = {name: (num_frames, fps) for name, num_frames, _, fps in VIDEO_SPECS}
  all_videos = {name: example for split in dataset.values() for name, example in split.items()}
  all_frames = np.concatenate([example["frames"] for example in all_videos.values()])
  images = jax.image.resize(all_frames.astype(np.float32) / 127.5 - 1.0, (len(all_frames), 32, 32, 3), "linear",
                            antialias=True)
  reference = np.asarray(jax.jit(PSPEncoder(**ENCODER_FIELDS).apply)(sources["variables"], images))
  np.testing.assert_allclose(np.concatenate([example["wplus"] for example in all_videos.values()]), reference,
                             atol=2e-5, rtol=1e-5)
  for name, example in all_videos.items():
    source = sources["frames"][name][SKIP_FRAMES:]
    expected = expected_frames(source)
    assert example["frames"].dtype == np.uint8 and example["frames"].shape == expected.shape
    if name in specs:
      mean_abs = np.abs(example["frames"].astype(np.float32) - expected).mean()
      assert mean_abs < CODEC_MEAN_ABS_LEVELS, (name, mean_abs)
      np.testing.assert_array_equal(example["frame_index"], np.arange(SKIP_FRAMES, specs[name][0]))
      assert example["fps"] == np.float32(specs[name][1])
    else:
      np.testing.assert_array_equal(example["frames"], expected)  # PNG is lossless
      np.testing.assert_array_equal(example["frame_index"], FOLDER_NUMBERS[name][SKIP_FRAMES:])
      assert example["fps"] == 0.0
    want = sources["table"].get(name, video_descriptions(name))
    assert example["descriptions"] == want, name
  assert all_videos["clip_01"]["descriptions"][1] == NON_ASCII


def test_existing_dataset_is_kept(sources, capsys):
  assert run_prepare(*sources["args"], f"--out={sources['out']}") == 0
  assert "already holds a prepared dataset" in capsys.readouterr().out


def test_frames_are_cropped_to_the_generator_aspect_then_resized():
  rng = np.random.default_rng(0)
  wide = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)  # a square generator: the centered 32x32, unscaled
  np.testing.assert_array_equal(inputs.FrameFormat(32, 32, aspect=1).resize(Image.fromarray(wide)), wide[:, 4:36])
  portrait = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)  # a 2:1 generator: the centered 32x16, unscaled
  np.testing.assert_array_equal(inputs.FrameFormat(32, 16, aspect=2).resize(Image.fromarray(portrait)),
                                portrait[:, 4:20])
  # The 64x32 crop of a 64x48 frame squashed to 32x24, as fashion's 2:1 renders are: away from the crop's left and
  # right edges (where the filter reads the pixels beyond the crop) it equals resizing the cropped frame.
  tall = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
  squashed = inputs.FrameFormat(32, 24, aspect=2).resize(Image.fromarray(tall))
  expected = np.asarray(Image.fromarray(tall[:, 8:40]).resize((24, 32), Image.Resampling.BILINEAR))
  np.testing.assert_array_equal(squashed[:, 1:-1], expected[:, 1:-1])


def test_frame_numbers_and_tables(tmp_path):
  assert [inputs.frame_number(s) for s in ("000", "frame_012", "img_0005b", "x_v7", "a_b")] == [0, 12, 5, 7, None]
  table = tmp_path / "d.csv"
  table.write_text("name,description\nv1,first\nv2,other\nv1,  second  \nv3,\n", encoding="utf-8")
  assert inputs.read_description_table(str(table)) == {"v1": ["first", "second"], "v2": ["other"]}
  bad = tmp_path / "bad.csv"
  bad.write_text("video,text\nv1,first\n")
  with pytest.raises(UserError, match="name,description"):
    inputs.read_description_table(str(bad))


def write_bad_inputs(folder):
  """{input path: a phrase its reason must hold}: the six kinds of bad input (import mismatches elsewhere)."""
  frames = smooth_frames(7, 10, 40, 32)
  write_video_file(folder, "bad_corrupt", frames, 10.0, ["corrupt"])
  data = open(folder / "bad_corrupt.mp4", "rb").read()
  (folder / "bad_corrupt.mp4").write_bytes(data[:len(data) * 9 // 10])  # the header survives, frames do not
  (folder / "bad_garbage.mp4").write_bytes(b"not a video" * 50)
  (folder / "bad_garbage.txt").write_text("garbage")
  (folder / "bad_empty.mp4").write_bytes(b"")
  (folder / "bad_empty.txt").write_text("empty")
  write_frame_folder(folder / "bad_no_frames", [], [], ["a folder without frames"])
  write_video_file(folder, "bad_short", frames[:SKIP_FRAMES + FRAMES_PER_CLIP - 1], 10.0, ["short"])
  write_video_file(folder, "bad_undescribed", frames, 10.0)
  write_frame_folder(folder / "bad_latin1", frames, range(10))
  (folder / "bad_latin1" / inputs.FOLDER_DESCRIPTION_FILE).write_bytes("une robe à pois".encode("latin-1"))
  return {
      folder / "bad_corrupt.mp4": "truncated or corrupt",
      folder / "bad_garbage.mp4": "cannot be decoded",
      folder / "bad_empty.mp4": "0 bytes",
      folder / "bad_no_frames": "holds no frames",
      folder / "bad_short.mp4": "fewer than one clip",
      folder / "bad_undescribed.mp4": "no description",
      folder / "bad_latin1" / inputs.FOLDER_DESCRIPTION_FILE: "not UTF-8",
  }


def test_bad_inputs_are_skipped_and_reported(sources, tmp_path):
  videos = tmp_path / "videos"
  videos.mkdir()
  bad = write_bad_inputs(videos)
  good = {"good_a": smooth_frames(1, 9, 30, 30), "good_b": smooth_frames(2, 8, 24, 36)}
  for name, frames in good.items():
    write_frame_folder(videos / name, frames, range(len(frames)), [name])
  bad_names = sorted({os.path.relpath(path, videos).split(os.sep)[0].removesuffix(".mp4") for path in bad})
  (tmp_path / "train.txt").write_text("\n".join(["good_a", "missing_video", *bad_names]) + "\n")
  (tmp_path / "test.txt").write_text("good_b\n")
  out = tmp_path / "out"
  status = run_prepare(f"--config={sources['config']}", f"--videos={videos}", f"--out={out}",
                       f"--split=train={tmp_path / 'train.txt'}", f"--split=test={tmp_path / 'test.txt'}")
  assert status == 0
  report = read_report(out)
  for path, phrase in bad.items():
    assert phrase in report[str(path)], (path, report)
  assert "listed in --split train but not found" in report["missing_video"]
  assert len(report) == len(bad) + 1
  dataset = read_dataset(out)
  assert {split: sorted(videos) for split, videos in dataset.items()} == {"train": ["good_a"], "test": ["good_b"]}
  for split, name in (("train", "good_a"), ("test", "good_b")):
    np.testing.assert_array_equal(dataset[split][name]["frames"], expected_frames(good[name][SKIP_FRAMES:]))
    assert dataset[split][name]["descriptions"] == [name]


@pytest.mark.parametrize("case", range(7))
def test_strict_names_the_bad_input(sources, tmp_path, capsys, case):
  everything = tmp_path / "all"
  everything.mkdir()
  path, phrase = sorted(write_bad_inputs(everything).items())[case]
  videos = tmp_path / "videos"
  videos.mkdir()
  name = os.path.relpath(path, everything).split(os.sep)[0]
  os.rename(everything / name, videos / name)
  stem = os.path.splitext(name)[0]
  if os.path.exists(everything / f"{stem}.txt"):
    os.rename(everything / f"{stem}.txt", videos / f"{stem}.txt")
  status = run_prepare(f"--config={sources['config']}", f"--videos={videos}", f"--out={tmp_path / 'out'}", "--strict")
  error = capsys.readouterr().err
  assert status == 1
  assert str(videos / os.path.relpath(path, everything)) in error and phrase in error and "--strict" in error


def test_encoder_must_match_the_generator(sources, tmp_path, capsys):
  status = run_prepare(f"--config={sources['config']}", "--config.generator.resolution=64",
                       f"--videos={sources['videos']}", f"--out={tmp_path / 'out'}")
  error = capsys.readouterr().err
  assert status == 1 and "[8, 64]" in error and "[10, 64]" in error and str(sources["psp"]) in error


def test_kill_and_resume_equals_one_run(sources, tmp_path, capsys):
  out = tmp_path / "resumed"
  work = out / prepare.WORK_DIR
  command = [sys.executable, "-m", "vidstyleode_jax.data.prepare", "--progress=false", *sources["args"],
             f"--out={out}"]
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

  def finished():
    return [f for f in os.listdir(work) if f.endswith(".npz") and not f.startswith(".")] if work.is_dir() else []

  deadline = time.monotonic() + 300
  while not finished() and process.poll() is None and time.monotonic() < deadline:
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  stderr = process.communicate()[1].decode(errors="replace")
  done_before = len(finished())
  assert 1 <= done_before < len(sources["frames"]), stderr[-2000:]
  assert not os.path.exists(prepared.builder_dir(out))

  capsys.readouterr()
  assert run_prepare(*sources["args"], f"--out={out}") == 0
  assert f"prepared {len(sources['frames']) - done_before} video(s) in this run" in capsys.readouterr().out
  resumed, one_run = read_dataset(out), read_dataset(sources["out"])
  assert {split: list(videos) for split, videos in resumed.items()} == {
      split: list(videos) for split, videos in one_run.items()}
  for split, videos in one_run.items():
    for name, example in videos.items():
      for field, value in example.items():
        np.testing.assert_array_equal(resumed[split][name][field], value, err_msg=f"{split}/{name}/{field}")


def test_import_official_inversions(sources, tmp_path):
  img_root, inversion_root = tmp_path / "img", tmp_path / "inversions"
  rng = torch.Generator().manual_seed(0)
  codes = {}
  for index, name in enumerate(("v_one", "v_two", "v_three", "v_mismatch")):
    frames = smooth_frames(index, 9, 30, 26)
    write_frame_folder(img_root / name, frames, range(9), [f"{name} text"], pattern="{:03d}.png")
    (inversion_root / name).mkdir(parents=True)
    codes[name] = torch.randn(9, *WPLUS_SHAPE, generator=rng)
    for frame in range(9 if name != "v_mismatch" else 8):
      tensor = codes[name][frame][None] if index % 2 else codes[name][frame]  # [1, L, S] or [L, S]
      torch.save(tensor.clone(), inversion_root / name / f"{frame:03d}.pt")
  out = tmp_path / "out"
  assert run_prepare(f"--config={sources['config']}", f"--videos={img_root}", f"--out={out}",
                     f"--import_inversions={inversion_root}", "--test_fraction=0.3") == 0
  report = read_report(out)
  assert list(report) == [str(inversion_root / "v_mismatch")]
  assert "9 frames but 8 inversions" in report[str(inversion_root / "v_mismatch")]
  dataset = read_dataset(out)
  videos = {name: example for split in dataset.values() for name, example in split.items()}
  assert sorted(videos) == ["v_one", "v_three", "v_two"]
  for name, example in videos.items():
    np.testing.assert_array_equal(example["wplus"], codes[name][SKIP_FRAMES:].numpy())
    np.testing.assert_array_equal(example["frame_index"], np.arange(SKIP_FRAMES, 9))
    assert example["descriptions"] == [f"{name} text"]


def test_strict_import_names_the_mismatch(sources, tmp_path, capsys):
  img_root, inversion_root = tmp_path / "img", tmp_path / "inversions"
  write_frame_folder(img_root / "v", smooth_frames(0, 9, 30, 26), range(9), ["v text"], pattern="{:03d}.png")
  (inversion_root / "v").mkdir(parents=True)
  for frame in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9):
    torch.save(torch.zeros(1, *WPLUS_SHAPE), inversion_root / "v" / f"{frame:03d}.pt")
  status = run_prepare(f"--config={sources['config']}", f"--videos={img_root}", f"--out={tmp_path / 'out'}",
                       f"--import_inversions={inversion_root}", "--strict")
  error = capsys.readouterr().err
  assert status == 1
  assert f"{inversion_root / 'v'}: 9 frames but 10 inversions: no frame for inversion(s) ['009']" in error
