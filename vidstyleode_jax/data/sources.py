"""Where training and evaluation videos come from, by config.data.kind, as video sources.

`synthetic`: the built-in demo videos (data/synthetic.py), rendered once per workdir and cached there (written
atomically), together with a demo CLIP vocabulary built from their descriptions.
`prepared`: the splits config.data.train_split and eval_split of the prepared dataset in config.data.dataset_dir
(data/prepared.py, written by `python -m vidstyleode_jax.data.prepare`, which has already dropped the first
config.data.skip_frames frames of every video), read video by video from its ArrayRecord files.

Both kinds give video sources, the one interface the input pipeline (data/pipeline.py) and evaluation read through:
per video its usable frame numbers (after config.data.skip_frames, re-based to 0) and its description, and
clip(video, frame_numbers) -> (frames, wplus). Tokens come from each video's (first) description with the run's
tokenizer: config.clip.tokenizer, or when it is empty the demo vocabulary.
"""

import dataclasses
import os
import shutil
import tempfile

import numpy as np

from vidstyleode_jax import text
from vidstyleode_jax.data import pipeline
from vidstyleode_jax.data import prepared
from vidstyleode_jax.data import synthetic


class VideoSource:
  """Videos read clip by clip.

  frame_numbers[v]: [frames] int64, the usable frame numbers of video v (stored frames after skip_frames, re-based
  so that the first kept frame is 0); descriptions[v]: its description.
  """

  def __init__(self, frame_index, descriptions, skip_frames):
    """frame_index: per video, [stored frames] the source frame number of every stored frame, increasing."""
    self.skip_frames = skip_frames
    self.frame_numbers = tuple(pipeline.usable_frame_numbers(f, skip_frames) for f in frame_index)
    self.descriptions = tuple(descriptions)

  def __len__(self):
    return len(self.frame_numbers)

  def positions(self, video, frame_numbers):
    """Usable frame numbers of one video -> the positions of those frames in the stored video."""
    usable = self.frame_numbers[video]
    index = np.searchsorted(usable, frame_numbers)
    if np.any(index >= len(usable)) or not np.array_equal(usable[np.minimum(index, len(usable) - 1)], frame_numbers):
      raise ValueError(f"video {video} has no frame numbers {np.setdiff1d(frame_numbers, usable).tolist()}")
    return index + self.skip_frames

  def clip(self, video, frame_numbers):
    """-> (frames [T, H, W, 3] uint8, wplus [T, n_latent, style_dim] float32) at the given usable frame numbers."""
    raise NotImplementedError


class InMemoryVideos(VideoSource):
  """Equal-length videos held in memory (synthetic.VideoArrays); frame numbers are the positions 0, 1, ..."""

  def __init__(self, videos, skip_frames=0):
    self.videos = videos
    num_frames = videos.frames.shape[1]
    super().__init__([np.arange(num_frames)] * len(videos), videos.descriptions, skip_frames)

  def clip(self, video, frame_numbers):
    positions = self.positions(video, frame_numbers)
    return self.videos.frames[video, positions], self.videos.wplus[video, positions]


class PreparedVideos(VideoSource):
  """One split of a prepared dataset; each clip reads its video's record and keeps the requested frames."""

  def __init__(self, split, skip_frames=0):
    self.split = split
    for video, frame_index in enumerate(split.frame_index):
      if np.any(np.diff(frame_index) <= 0):
        raise prepared.PreparedDatasetError(
            f"video {split.names[video]!r}: frame_index is not increasing ({frame_index[:8].tolist()}...)")
    super().__init__(split.frame_index, [d[0] if d else "" for d in split.descriptions], skip_frames)

  def clip(self, video, frame_numbers):
    positions = self.positions(video, frame_numbers)
    record = self.split[video]
    return record["frames"][positions], record["wplus"][positions]


@dataclasses.dataclass(frozen=True)
class Datasets:
  train: VideoSource
  eval: VideoSource
  train_tokens: np.ndarray  # [videos, context] int32
  eval_tokens: np.ndarray
  tokenizer: text.ClipTokenizer


def _save_atomically(videos, path):
  handle, tmp = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(path))
  os.close(handle)
  videos.save(tmp)
  os.replace(tmp, path)


def _cached_videos(path, make):
  if not os.path.exists(path):
    _save_atomically(make(), path)
  return synthetic.VideoArrays.load(path)


def _demo_vocabulary(folder):
  """The demo CLIP vocabulary in folder/tokenizer, written once; safe when several processes share the folder."""
  tokenizer_dir = os.path.join(folder, "tokenizer")
  if not os.path.isdir(tokenizer_dir):
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=folder)
    text.write_demo_vocabulary(tmp, synthetic.vocabulary_words())
    try:
      os.rename(tmp, tokenizer_dir)
    except OSError:  # another process renamed its copy first
      shutil.rmtree(tmp)
  return tokenizer_dir


def _tokenizer(config, folder):
  """config.clip.tokenizer, or the demo vocabulary written in `folder` when that field is empty."""
  tokenizer_dir = config.clip.tokenizer or _demo_vocabulary(folder)
  tokenizer = text.ClipTokenizer(tokenizer_dir, config.clip.context_length)
  if tokenizer.vocab_size > config.clip.vocab_size:
    raise ValueError(
        f"the tokenizer in {tokenizer_dir} has {tokenizer.vocab_size} ids, more than clip.vocab_size="
        f"{config.clip.vocab_size}"
    )
  return tokenizer


def _datasets(config, train, evaluation, folder):
  tokenizer = _tokenizer(config, folder)
  return Datasets(train, evaluation, tokenizer(list(train.descriptions)), tokenizer(list(evaluation.descriptions)),
                  tokenizer)


def synthetic_datasets(config, frozen_networks, frozen_vars, workdir):
  d, g = config.data, config.generator
  folder = os.path.join(workdir, "demo_data")
  os.makedirs(folder, exist_ok=True)
  render = lambda w: frozen_networks.render(frozen_vars, w)
  mapping = lambda z: frozen_networks.mapping(frozen_vars, z)
  make = lambda num_videos, seed: synthetic.make_videos(
      render, mapping, num_videos=num_videos, num_frames=d.frames_per_video, n_latent=frozen_networks.generator.n_latent,
      style_dim=g.style_dim, amplitude=d.motion_amplitude, seed=seed,
  )
  train = _cached_videos(os.path.join(folder, "train.npz"), lambda: make(d.num_train_videos, [config.seed, 0]))
  evaluation = _cached_videos(os.path.join(folder, "eval.npz"), lambda: make(d.num_eval_videos, [config.seed, 1]))
  return _datasets(config, InMemoryVideos(train, d.skip_frames), InMemoryVideos(evaluation, d.skip_frames), folder)


def _open_checked(config, split_field, n_latent):
  """Opens the split named by config.data.<split_field> and checks it against the config."""
  d = config.data
  split_name = d[split_field]
  split = prepared.open_split(d.dataset_dir, split_name)
  where = f"{prepared.builder_dir(d.dataset_dir)} split {split_name!r} (data.{split_field})"
  if split.frame_size != (d.height, d.width):
    raise prepared.PreparedDatasetError(
        f"{where}: frames are {split.frame_size[0]}x{split.frame_size[1]}, but data.height x data.width = "
        f"{d.height}x{d.width}; prepare the videos at the config's size or change the config")
  wplus_shape = (n_latent, config.generator.style_dim)
  if split.wplus_shape != wplus_shape:
    raise prepared.PreparedDatasetError(
        f"{where}: W+ inversions are {split.wplus_shape[0]}x{split.wplus_shape[1]}, but the generator "
        f"(generator.resolution={config.generator.resolution}, generator.style_dim={config.generator.style_dim}) "
        f"takes {wplus_shape[0]}x{wplus_shape[1]}")
  videos = PreparedVideos(split)  # `prepare` already dropped the first data.skip_frames frames of every video
  if not len(videos):
    raise prepared.PreparedDatasetError(f"{where}: holds no videos")
  too_short = [v for v, numbers in enumerate(videos.frame_numbers) if len(numbers) < d.frames_per_clip]
  if too_short:
    listed = ", ".join(f"{split.names[v]!r} ({len(videos.frame_numbers[v])})" for v in too_short[:5])
    raise prepared.PreparedDatasetError(
        f"{where}: {len(too_short)} videos have fewer than data.frames_per_clip={d.frames_per_clip} frames: "
        f"{listed}{', ...' if len(too_short) > 5 else ''}")
  return videos, where


def prepared_datasets(config, n_latent, workdir):
  """The train and eval splits of config.data.dataset_dir; raises PreparedDatasetError naming what does not fit."""
  train, where = _open_checked(config, "train_split", n_latent)
  if len(train) < config.data.batch_size:
    raise prepared.PreparedDatasetError(
        f"{where}: {len(train)} videos cannot fill a batch of data.batch_size={config.data.batch_size}")
  evaluation, _ = _open_checked(config, "eval_split", n_latent)
  return _datasets(config, train, evaluation, workdir)


def load(config, frozen_networks, frozen_vars, workdir):
  if config.data.kind == "synthetic":
    return synthetic_datasets(config, frozen_networks, frozen_vars, workdir)
  if config.data.kind == "prepared":
    return prepared_datasets(config, frozen_networks.generator.n_latent, workdir)
  raise ValueError(f"config.data.kind={config.data.kind!r} must be 'synthetic' or 'prepared'")
