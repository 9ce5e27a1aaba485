"""The input pipeline over prepared datasets: sampling rules, determinism, host-local reads, the same batches and
the same training run as the in-memory synthetic kind, and clear errors for datasets that do not fit the config."""

import dataclasses
import json
import os
import threading

import jax
import numpy as np
import pytest

from tests.conftest import tiny_config
from vidstyleode_jax import config_validation
from vidstyleode_jax import heldout
from vidstyleode_jax import inference
from vidstyleode_jax import text
from vidstyleode_jax import train
from vidstyleode_jax.data import pipeline
from vidstyleode_jax.data import prepared
from vidstyleode_jax.data import sources
from vidstyleode_jax.data import synthetic
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import frozen as frozen_lib

SPLITS = {"train": "train.npz", "test": "eval.npz"}  # prepared split -> the synthetic kind's cached videos

# Videos with different lengths, offsets and gaps in their source frame numbers.
GAPPY_FRAME_INDEX = (
    np.arange(3, 23),
    np.arange(0, 40, 2),
    np.arange(15),
    np.concatenate([np.arange(10), np.arange(12, 30)]),
    np.arange(100, 125),
)
GAPPY_WPLUS_SHAPE = (2, 3)


def demo_examples(videos):
  for v in range(len(videos)):
    yield dict(name=f"demo_{v:03d}", frames=videos.frames[v], wplus=videos.wplus[v],
               frame_index=np.arange(videos.frames.shape[1]), descriptions=[videos.descriptions[v]], fps=24.0)


def write_demo_dataset(demo_folder, dataset_dir):
  """The synthetic kind's cached demo videos (workdir/demo_data) as a prepared dataset: splits train and test."""
  videos = {split: synthetic.VideoArrays.load(os.path.join(demo_folder, name)) for split, name in SPLITS.items()}
  frames, wplus = videos["train"].frames, videos["train"].wplus
  prepared.write(dataset_dir, {split: demo_examples(v) for split, v in videos.items()}, frame_size=frames.shape[2:4],
                 wplus_shape=wplus.shape[2:])


def prepared_config(dataset_dir, num_steps=2, tokenizer=""):
  config = tiny_config(num_steps)
  config.clip.tokenizer = tokenizer
  config.data.update(kind="prepared", dataset_dir=str(dataset_dir), train_split="train", eval_split="test")
  return config


def synthetic_config(demo_dirs, num_steps=3):
  """The tiny config with the demo's vocabulary named, so that both kinds tokenize with the same one (without it,
  training builds each run's vocabulary from the descriptions its data holds)."""
  config = tiny_config(num_steps)
  config.clip.tokenizer = str(demo_dirs / "vocabulary")
  return config


def demo_prepared_config(demo_dirs, num_steps=2):
  """The synthetic config's videos and vocabulary, read as a prepared dataset."""
  return prepared_config(demo_dirs / "dataset", num_steps, tokenizer=str(demo_dirs / "vocabulary"))


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory):
  """The tiny config's synthetic videos rendered into a workdir (synthetic/demo_data, as training caches them),
  written as a prepared dataset (dataset/), and the demo's vocabulary (vocabulary/)."""
  out = tmp_path_factory.mktemp("demo")
  text.write_vocabulary_of(str(out / "vocabulary"), synthetic.vocabulary_words())
  config = synthetic_config(out)
  nets = inference.Networks.from_config(config)
  frozen_vars = frozen_lib.load_or_init(nets.frozen, config, jax.random.key(config.seed + 1))
  sources.load(config, nets.frozen, frozen_vars, str(out / "synthetic"))
  write_demo_dataset(str(out / "synthetic" / "demo_data"), str(out / "dataset"))
  return out


def load_both_kinds(demo_dirs):
  """Datasets of the synthetic kind (its cached videos) and of the prepared kind (the same videos written out)."""
  config = synthetic_config(demo_dirs)
  nets = inference.Networks.from_config(config)
  synthetic_data = sources.load(config, nets.frozen, None, str(demo_dirs / "synthetic"))
  prepared_data = sources.load(demo_prepared_config(demo_dirs), nets.frozen, None, str(demo_dirs / "prepared"))
  return nets, synthetic_data, prepared_data


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_prepared_kind_gives_the_same_batches_and_eval_clips_as_the_synthetic_kind(demo_dirs):
  nets, synthetic_data, prepared_data = load_both_kinds(demo_dirs)
  assert isinstance(prepared_data.train, sources.PreparedVideos)
  np.testing.assert_array_equal(synthetic_data.train_tokens, prepared_data.train_tokens)
  d = nets.config.data
  streams = []
  for data in (synthetic_data, prepared_data):
    sampler = pipeline.ClipSampler(data.train.frame_numbers, batch_size=d.batch_size,
                                   frames_per_clip=d.frames_per_clip, seed=3)
    batches = pipeline.training_batches(data.train, data.train_tokens, sampler, video_length=d.video_length,
                                        first_step=0, read_threads=2)
    streams.append([next(batches) for _ in range(6)])
  for (step_a, batch_a), (step_b, batch_b) in zip(*streams):
    assert step_a == step_b
    assert_batches_equal(batch_a, batch_b)
  # The synthetic batches are the stored arrays at the planned frame numbers.
  step, batch = streams[0][4]
  video_ids, frame_numbers = sampler.plan(step)
  videos = synthetic.VideoArrays.load(str(demo_dirs / "synthetic" / "demo_data" / "train.npz"))
  np.testing.assert_array_equal(batch["frames"], videos.frames[video_ids][:, frame_numbers])
  np.testing.assert_array_equal(batch["wplus"], videos.wplus[video_ids][:, frame_numbers])
  np.testing.assert_array_equal(batch["times"][0], (frame_numbers / d.video_length).astype(np.float32))

  for num_videos in (None, 2):
    clips = [heldout.eval_clips(nets, data.eval, data.eval_tokens, num_videos)
             for data in (synthetic_data, prepared_data)]
    for a, b in zip(*clips):
      np.testing.assert_array_equal(a, b)
  frames01, wplus, _, times = clips[0]
  expected_numbers = np.round(np.linspace(0, d.frames_per_video - 1, d.frames_per_clip)).astype(int)
  np.testing.assert_array_equal(times, (expected_numbers / d.video_length).astype(np.float32))
  eval_videos = synthetic.VideoArrays.load(str(demo_dirs / "synthetic" / "demo_data" / "eval.npz"))
  np.testing.assert_allclose(frames01 * 255.0, eval_videos.frames[:2][:, expected_numbers], atol=1e-3)
  np.testing.assert_array_equal(wplus, eval_videos.wplus[:2][:, expected_numbers])


def read_metrics(workdir):
  """-> (per step (step, loss/total, data/batch_checksum), the eval/* metrics of each evaluation)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  losses = [(m["step"], m["loss/total"], m["data/batch_checksum"]) for m in lines if "loss/total" in m]
  evals = [{k: v for k, v in m.items() if k.startswith("eval/")} for m in lines if "eval/rec_mse" in m]
  return losses, evals


@pytest.mark.slow  # two tiny training runs: about 2 x 2 minutes of compilation on 2 CPU cores
@pytest.mark.extended
def test_prepared_kind_trains_with_the_same_losses_as_the_synthetic_kind(demo_dirs):
  train.train(synthetic_config(demo_dirs, num_steps=2), str(demo_dirs / "synthetic"), progress=False)  # cached videos
  train.train(demo_prepared_config(demo_dirs), str(demo_dirs / "prepared"), progress=False)
  (synthetic_losses, synthetic_evals), (prepared_losses, prepared_evals) = (
      read_metrics(demo_dirs / kind) for kind in ("synthetic", "prepared"))
  print(synthetic_losses, prepared_losses, synthetic_evals)
  assert [step for step, _, _ in prepared_losses] == [1, 2] and len(prepared_evals) == 1
  # Same videos, tokens and plan, same XLA programs: bit-identical losses and held-out metrics.
  assert prepared_losses == synthetic_losses
  assert prepared_evals == synthetic_evals


class RecordingSource:
  """Wraps a PreparedSplit's ArrayRecord data source and records which videos are read."""

  def __init__(self, source):
    self.source = source
    self.reads = []
    self.lock = threading.Lock()

  def __len__(self):
    return len(self.source)

  def __getitem__(self, video):
    with self.lock:
      self.reads.append(int(video))
    return self.source[video]


def gappy_examples():
  for v, frame_index in enumerate(GAPPY_FRAME_INDEX):
    positions = np.arange(len(frame_index))
    # Every stored frame says which video and position it is, and its W+ which source frame number it has.
    frames = np.zeros((len(frame_index), 4, 4, 3), np.uint8)
    frames[..., 0], frames[..., 1] = v, positions[:, None, None]
    wplus = np.broadcast_to((1000 * v + frame_index)[:, None, None], (len(frame_index),) + GAPPY_WPLUS_SHAPE)
    yield dict(name=f"gappy_{v}", frames=frames, wplus=wplus.astype(np.float32), frame_index=frame_index,
               descriptions=["a reddish figure swaying", "second description"], fps=25.0)


@pytest.fixture(scope="module")
def gappy_dataset(tmp_path_factory):
  dataset_dir = tmp_path_factory.mktemp("gappy")
  prepared.write(str(dataset_dir), {"train": gappy_examples(), "test": gappy_examples()}, frame_size=(4, 4),
                 wplus_shape=GAPPY_WPLUS_SHAPE)
  return dataset_dir


def recording_videos(dataset_dir, skip_frames):
  split = prepared.open_split(str(dataset_dir), "train")
  recorder = RecordingSource(split.source)
  return sources.PreparedVideos(dataclasses.replace(split, source=recorder), skip_frames), recorder


def test_clips_follow_the_sampling_rules_over_shared_re_based_frame_numbers(gappy_dataset):
  skip, batch_size, frames_per_clip = 2, 2, 4
  videos, _ = recording_videos(gappy_dataset, skip)
  usable = [list(f[skip:] - f[skip]) for f in GAPPY_FRAME_INDEX]  # direct computation, independent of the code
  tokens = np.arange(len(usable))[:, None]
  sampler = pipeline.ClipSampler(videos.frame_numbers, batch_size=batch_size, frames_per_clip=frames_per_clip, seed=5)
  drawn = {}
  for step in range(1000):
    video_ids, frame_numbers = sampler.plan(step)
    shared = set.intersection(*(set(usable[v]) for v in video_ids))
    assert frame_numbers[0] == 0 and len(frame_numbers) == frames_per_clip
    assert np.all(np.diff(frame_numbers) > 0), frame_numbers
    assert set(frame_numbers.tolist()) <= shared
    drawn.setdefault(tuple(video_ids), set()).update(frame_numbers.tolist())
    if step % 50 == 0:
      batch = pipeline.make_batch(videos, tokens, video_ids, frame_numbers, video_length=10.0)
      for row, v in enumerate(video_ids):
        positions = [skip + usable[v].index(n) for n in frame_numbers]
        np.testing.assert_array_equal(batch["frames"][row, :, 0, 0, 0], v)
        np.testing.assert_array_equal(batch["frames"][row, :, 0, 0, 1], positions)
        np.testing.assert_array_equal(batch["wplus"][row, :, 0, 0], 1000 * v + GAPPY_FRAME_INDEX[v][positions])
      np.testing.assert_array_equal(batch["times"], np.tile(frame_numbers / 10.0, (batch_size, 1)).astype(np.float32))
  # Over many steps every shared frame number of a batch's videos is drawn: the whole intersection is used.
  for video_ids, numbers in drawn.items():
    assert numbers == set.intersection(*(set(usable[v]) for v in video_ids)), video_ids
  assert len(drawn) == 10  # every pair of the 5 videos formed a batch


def test_clips_with_a_clip_span_lie_in_a_window_of_consecutive_shared_frames():
  """data.clip_span = 6 on videos of 24 frames (one video with a gap, so the window counts shared frame numbers, not
  frames): every clip starts its window and lies within its 6 shared frame numbers; the windows start everywhere
  from 0 to the last full window; the held-out clips take the first 6 shared frame numbers."""
  frame_numbers = [np.arange(24), np.arange(24), np.delete(np.arange(24), 10)]
  span, frames_per_clip = 6, 4
  sampler = pipeline.ClipSampler(frame_numbers, batch_size=3, frames_per_clip=frames_per_clip, seed=0,
                                 clip_span=span)
  shared = np.delete(np.arange(24), 10)
  starts = set()
  for step in range(400):
    _, clip = sampler.plan(step)
    assert len(clip) == frames_per_clip and np.all(np.diff(clip) > 0)
    start = int(np.searchsorted(shared, clip[0]))
    assert shared[start] == clip[0] and set(clip.tolist()) <= set(shared[start:start + span].tolist()), clip
    starts.add(start)
  assert starts == set(range(len(shared) - span + 1))
  np.testing.assert_array_equal(heldout.eval_frame_numbers(shared, frames_per_clip, span), [0, 2, 3, 5])
  np.testing.assert_array_equal(heldout.eval_frame_numbers(shared, frames_per_clip), [0, 7, 16, 23])


def test_batches_are_a_function_of_seed_and_step(gappy_dataset):
  videos, _ = recording_videos(gappy_dataset, skip_frames=1)
  tokens = np.arange(len(videos))[:, None]

  def batches(seed, first_step, count, read_threads):
    sampler = pipeline.ClipSampler(videos.frame_numbers, batch_size=2, frames_per_clip=5, seed=seed)
    stream = pipeline.prefetch(pipeline.training_batches(videos, tokens, sampler, video_length=7.0,
                                                         first_step=first_step, read_threads=read_threads), size=3)
    items = [next(stream) for _ in range(count)]
    stream.close()
    return items

  reference = batches(seed=11, first_step=0, count=12, read_threads=1)
  assert [step for step, _ in reference] == list(range(12))
  for (_, a), (_, b) in zip(reference, batches(seed=11, first_step=0, count=12, read_threads=3)):
    assert_batches_equal(a, b)
  for (_, a), (_, b) in zip(reference[7:], batches(seed=11, first_step=7, count=5, read_threads=2)):  # resume at 7
    assert_batches_equal(a, b)
  other = batches(seed=12, first_step=0, count=12, read_threads=1)
  differing = [not np.array_equal(a["video_ids"], b["video_ids"]) or not np.array_equal(a["times"], b["times"])
               for (_, a), (_, b) in zip(reference, other)]
  assert sum(differing) >= 6, differing


def test_each_of_two_hosts_reads_only_its_rows(gappy_dataset):
  batch_size, steps = 4, 6
  single, _ = recording_videos(gappy_dataset, skip_frames=0)
  tokens = np.arange(len(single))[:, None] * 10
  make_sampler = lambda videos: pipeline.ClipSampler(videos.frame_numbers, batch_size=batch_size, frames_per_clip=3,
                                                     seed=2)
  stream = lambda videos, **hosts: pipeline.training_batches(videos, tokens, make_sampler(videos), video_length=5.0,
                                                             first_step=3, read_threads=2, **hosts)
  global_batches = [next(b) for b in [stream(single)] for _ in range(steps)]
  host_batches = []
  for process_index in range(2):
    videos, recorder = recording_videos(gappy_dataset, skip_frames=0)
    batches = stream(videos, process_index=process_index, process_count=2)
    host_batches.append([next(batches) for _ in range(steps)])
    rows = pipeline.host_rows(batch_size, process_index, 2)
    expected_reads = [int(v) for step in range(3, 3 + steps) for v in make_sampler(videos).plan(step)[0][rows]]
    assert sorted(recorder.reads) == sorted(expected_reads)
  for (step, whole), (step_0, part_0), (step_1, part_1) in zip(global_batches, *host_batches):
    assert step == step_0 == step_1
    assert_batches_equal(whole, {key: np.concatenate([part_0[key], part_1[key]]) for key in whole})


def test_prefetch_raises_the_readers_error():
  def failing():
    yield 1
    raise OSError("record 3 is unreadable")

  stream = pipeline.prefetch(failing(), size=2)
  assert next(stream) == 1
  with pytest.raises(OSError, match="record 3 is unreadable"):
    next(stream)


def gappy_config(dataset_dir, **data):
  config = prepared_config(dataset_dir)
  config.data.update(height=4, width=4, batch_size=2, frames_per_clip=4)
  config.data.update(**data)
  config.generator.style_dim = GAPPY_WPLUS_SHAPE[1]
  return config


def test_prepared_datasets_reads_splits_and_tokenizes_first_descriptions(gappy_dataset, tmp_path):
  data = sources.prepared_datasets(gappy_config(gappy_dataset), GAPPY_WPLUS_SHAPE[0], str(tmp_path))
  assert len(data.train) == len(data.eval) == len(GAPPY_FRAME_INDEX)
  np.testing.assert_array_equal(data.train_tokens[0], data.tokenizer("a reddish figure swaying")[0])
  assert data.tokenizer.decode(data.eval_tokens[3]) == "a reddish figure swaying"
  np.testing.assert_array_equal(data.train.frame_numbers[1], np.arange(0, 40, 2))


@pytest.mark.parametrize(
    "data, n_latent, names",
    [
        (dict(height=8), 2, ["frames are 4x4", "data.height x data.width = 8x4", "'train'"]),
        ({}, 18, ["W+ inversions are 2x3", "takes 18x3", "generator.resolution=32"]),
        (dict(batch_size=6), 2, ["5 videos", "data.batch_size=6"]),
        (dict(frames_per_clip=21), 2, ["3 videos", "data.frames_per_clip=21", "'gappy_0' (20)", "'gappy_2' (15)"]),
    ],
)
def test_a_dataset_that_does_not_fit_the_config_is_named(gappy_dataset, tmp_path, data, n_latent, names):
  with pytest.raises(UserError) as error:
    sources.prepared_datasets(gappy_config(gappy_dataset, **data), n_latent, str(tmp_path))
  message = str(error.value)
  assert str(prepared.builder_dir(str(gappy_dataset))) in message and "\n" not in message
  for name in names:
    assert name in message


def test_a_missing_dataset_names_the_folder_and_the_prepare_command(tmp_path):
  config = gappy_config(tmp_path / "not_prepared")
  os.makedirs(config.data.dataset_dir)
  with pytest.raises(UserError) as error:
    sources.prepared_datasets(config, GAPPY_WPLUS_SHAPE[0], str(tmp_path))
  assert config.data.dataset_dir in str(error.value)
  assert "python -m vidstyleode_jax.data.prepare" in str(error.value)


def test_too_few_shared_frames_in_a_batch_is_an_error():
  sampler = pipeline.ClipSampler([np.arange(6), np.arange(0, 12, 2)], batch_size=2, frames_per_clip=4, seed=0)
  with pytest.raises(ValueError, match=r"share only 3 frame numbers, fewer than frames_per_clip=4"):
    sampler.plan(0)


def test_config_validation_names_bad_data_fields(config):
  config.data.kind = "folders"
  with pytest.raises(UserError, match="data.kind='folders'"):
    config_validation.resolve(config)
  config.data.update(kind="prepared", dataset_dir="")
  with pytest.raises(UserError, match="data.dataset_dir"):
    config_validation.resolve(config)
