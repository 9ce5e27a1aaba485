"""Where training and evaluation videos come from, by config.data.kind, as video sources.

`synthetic`: the built-in demo videos (data/synthetic.py), rendered once per workdir and cached there (written
atomically).
`prepared`: the splits config.data.train_split and eval_split of the prepared dataset in config.data.dataset_dir
(data/prepared.py, written by `python -m vidstyleode_jax.data.prepare`, which has already dropped the first
config.data.skip_frames frames of every video), read video by video from its ArrayRecord files.

Both kinds give video sources, the one interface the input pipeline (data/pipeline.py) and evaluation read through:
per video its usable frame numbers (after config.data.skip_frames, re-based to 0) and its description, and
clip(video, frame_numbers) -> (frames, wplus). Tokens come from each video's (first) description with the run's
tokenizer (text.tokenizer_folder). When the run's CLIP is drawn at random and no tokenizer is named, training first
builds the vocabulary from every description the data can hold (text.write_vocabulary_of), once per workdir.
"""

import dataclasses
import os

import numpy as np

from vidstyleode_jax import files
from vidstyleode_jax import text
from vidstyleode_jax.data import pipeline
from vidstyleode_jax.data import prepared
from vidstyleode_jax.data import synthetic
from vidstyleode_jax.errors import UserError


class VideoSource:
  """Videos read clip by clip.

  frame_numbers[v]: [frames] int64, the usable frame numbers of video v (stored frames after skip_frames, re-based
  so that the first kept frame is 0); descriptions[v]: its description; names[v]: its name; fps[v]: the frame rate
  of its source, 0.0 when unknown (frame folders, the demo's rendered videos).
  """

  def __init__(self, frame_index, descriptions, skip_frames, names, fps):
    """frame_index: per video, [stored frames] the source frame number of every stored frame, increasing."""
    self.skip_frames = skip_frames
    self.frame_numbers = tuple(pipeline.usable_frame_numbers(f, skip_frames) for f in frame_index)
    self.descriptions = tuple(descriptions)
    self.names = tuple(names)
    self.fps = tuple(float(rate) for rate in fps)

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
    super().__init__([np.arange(num_frames)] * len(videos), videos.descriptions, skip_frames,
                     [f"demo video {k}" for k in range(len(videos))], [0.0] * len(videos))

  def clip(self, video, frame_numbers):
    positions = self.positions(video, frame_numbers)
    return self.videos.frames[video, positions], self.videos.wplus[video, positions]


class PreparedVideos(VideoSource):
  """One split of a prepared dataset; each clip reads its video's record and keeps the requested frames."""

  def __init__(self, split, skip_frames=0):
    self.split = split
    for video, frame_index in enumerate(split.frame_index):
      if np.any(np.diff(frame_index) <= 0):
        raise UserError(
            f"video {split.names[video]!r}: frame_index is not increasing ({frame_index[:8].tolist()}...)")
    super().__init__(split.frame_index, [d[0] if d else "" for d in split.descriptions], skip_frames, split.names,
                     split.fps)

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


def _cached_videos(path, make):
  if not os.path.exists(path):
    with files.atomic_path(path) as temp_path:
      make().save(temp_path)
  return synthetic.VideoArrays.load(path)


def tokenize(tokenizer, videos):
  """[videos, context] int32 token ids of every video's description; a UserError names a video whose is too long."""
  rows = []
  for name, description in zip(videos.names, videos.descriptions):
    try:
      rows.append(tokenizer(description)[0])
    except UserError as error:
      raise UserError(f"video {name!r}: {error}") from None
  return np.stack(rows)


def _datasets(config, train, evaluation, workdir, vocabulary_texts):
  """Datasets of two video sources, tokenized with the run's tokenizer (built from vocabulary_texts if needed)."""
  folder = text.tokenizer_folder(config, workdir)
  if text.builds_vocabulary(config) and not os.path.isdir(folder):
    with files.atomic_folder(folder, exist_ok=True) as temp_folder:  # processes of one run may race here
      text.write_vocabulary_of(temp_folder, vocabulary_texts)
  tokenizer = text.load_tokenizer(config, workdir)
  return Datasets(train, evaluation, tokenize(tokenizer, train), tokenize(tokenizer, evaluation), tokenizer)


SYNTHETIC_SPLITS = ("train", "eval")


def synthetic_videos(config, frozen_networks, frozen_vars, split, num_frames=None):
  """The demo videos of one split ("train" or "eval"), num_frames long (default data.frames_per_video).

  A longer num_frames continues the same videos past data.frames_per_video frames (data/synthetic.py).
  """
  d = config.data
  return synthetic.make_videos(
      lambda w: frozen_networks.render(frozen_vars, w), lambda z: frozen_networks.mapping(frozen_vars, z),
      num_videos=d.num_train_videos if split == "train" else d.num_eval_videos,
      num_frames=d.frames_per_video if num_frames is None else num_frames,
      n_latent=frozen_networks.generator.n_latent, style_dim=config.generator.style_dim,
      amplitude=d.motion_amplitude, seed=[config.seed, SYNTHETIC_SPLITS.index(split)], motion=d.motion,
      cycle_frames=d.frames_per_video, directions_seed=config.seed,
  )


def synthetic_datasets(config, frozen_networks, frozen_vars, workdir):
  d = config.data
  folder = os.path.join(workdir, files.DEMO_DATA_DIR)
  os.makedirs(folder, exist_ok=True)
  make = lambda split: synthetic_videos(config, frozen_networks, frozen_vars, split)
  train = _cached_videos(os.path.join(folder, "train.npz"), lambda: make("train"))
  evaluation = _cached_videos(os.path.join(folder, "eval.npz"), lambda: make("eval"))
  return _datasets(config, InMemoryVideos(train, d.skip_frames), InMemoryVideos(evaluation, d.skip_frames), workdir,
                   synthetic.vocabulary_words())


def _open_checked(config, split_field, n_latent):
  """Opens the split named by config.data.<split_field> and checks it against the config."""
  d = config.data
  split_name = d[split_field]
  split = prepared.open_split(d.dataset_dir, split_name)
  where = f"{prepared.builder_dir(d.dataset_dir)} split {split_name!r} (data.{split_field})"
  if split.frame_size != (d.height, d.width):
    raise UserError(
        f"{where}: frames are {split.frame_size[0]}x{split.frame_size[1]}, but data.height x data.width = "
        f"{d.height}x{d.width}; prepare the videos at the config's size or change the config")
  wplus_shape = (n_latent, config.generator.style_dim)
  if split.wplus_shape != wplus_shape:
    raise UserError(
        f"{where}: W+ inversions are {split.wplus_shape[0]}x{split.wplus_shape[1]}, but the generator "
        f"(generator.resolution={config.generator.resolution}, generator.style_dim={config.generator.style_dim}) "
        f"takes {wplus_shape[0]}x{wplus_shape[1]}")
  videos = PreparedVideos(split)  # `prepare` already dropped the first data.skip_frames frames of every video
  if not len(videos):
    raise UserError(f"{where}: holds no videos")
  too_short = [v for v, numbers in enumerate(videos.frame_numbers) if len(numbers) < d.frames_per_clip]
  if too_short:
    listed = ", ".join(f"{split.names[v]!r} ({len(videos.frame_numbers[v])})" for v in too_short[:5])
    raise UserError(
        f"{where}: {len(too_short)} videos have fewer than data.frames_per_clip={d.frames_per_clip} frames: "
        f"{listed}{', ...' if len(too_short) > 5 else ''}")
  return videos, where


def prepared_datasets(config, n_latent, workdir):
  """The train and eval splits of config.data.dataset_dir; raises UserError naming what does not fit."""
  train, where = _open_checked(config, "train_split", n_latent)
  if len(train) < config.data.batch_size:
    raise UserError(
        f"{where}: {len(train)} videos cannot fill a batch of data.batch_size={config.data.batch_size}")
  evaluation, _ = _open_checked(config, "eval_split", n_latent)
  descriptions = [description for split in (train.split, evaluation.split) for video in split.descriptions
                  for description in video]
  return _datasets(config, train, evaluation, workdir, descriptions)


def load(config, frozen_networks, frozen_vars, workdir):
  if config.data.kind == "synthetic":
    return synthetic_datasets(config, frozen_networks, frozen_vars, workdir)
  if config.data.kind == "prepared":
    return prepared_datasets(config, frozen_networks.generator.n_latent, workdir)
  raise ValueError(f"config.data.kind={config.data.kind!r} must be 'synthetic' or 'prepared'")
