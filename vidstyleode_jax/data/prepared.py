"""The prepared-dataset format: a tensorflow-datasets dataset in ArrayRecord files, one example per video.

`python -m vidstyleode_jax.data.prepare` writes it; training (config.data.kind = "prepared") reads it. Neither needs
TensorFlow: tfds writes ArrayRecord files and reads them back as random-access numpy data sources.

  DATASET_DIR/vidstyleode_videos/1.0.0/
    vidstyleode_videos-<split>.array_record-<shard>-of-<shards>
    dataset_info.json, features.json      tfds' own description of splits and features
    metadata.json                         per split: names, descriptions, frame_index, fps of every video

One example (one video) holds:
  name          the source video file stem or frame-folder name (the official split lists name these)
  frames        [time, height, width, 3] uint8, resized and center-cropped to the dataset's frame size
  wplus         [time, n_latent, style_dim] float32, one W+ inversion per frame
  frame_index   [time] int64, the source frame number of every stored frame
  descriptions  the video's text descriptions, one or more
  fps           the source frame rate (0.0 when unknown, e.g. a folder of frames)

The metadata repeats everything but frames and wplus, so that opening a split does not read the videos. tfds writes
into an `incomplete.*` folder and renames it when every split is done: a dataset folder that exists is complete.
"""

import dataclasses
import glob
import os
import shutil
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from vidstyleode_jax import files
from vidstyleode_jax.errors import UserError

BUILDER_NAME = "vidstyleode_videos"
VERSION = "1.0.0"
METADATA_FIELDS = ("names", "descriptions", "frame_index", "fps")
# frames and wplus are stored as one raw byte string each: tfds' default encoding (one int64/float per value) is
# 8x larger for uint8 frames and takes about 0.5 s per fashion-size video to decode, holding the GIL.
RAW_BYTES = tfds.features.Encoding.BYTES


class VidstyleodeVideos(tfds.core.GeneratorBasedBuilder):
  """Writes the splits given as {split: iterable of example dicts}; the order of examples is kept."""

  VERSION = tfds.core.Version(VERSION)

  def __init__(self, *, frame_size, wplus_shape, splits, **kwargs):
    self.frame_size = tuple(frame_size)
    self.wplus_shape = tuple(wplus_shape)
    self.split_examples = splits
    super().__init__(**kwargs)

  def _info(self):
    features = tfds.features.FeaturesDict({
        "name": tfds.features.Text(),
        "frames": tfds.features.Tensor(shape=(None,) + self.frame_size + (3,), dtype=np.uint8, encoding=RAW_BYTES),
        "wplus": tfds.features.Tensor(shape=(None,) + self.wplus_shape, dtype=np.float32, encoding=RAW_BYTES),
        "frame_index": tfds.features.Tensor(shape=(None,), dtype=np.int64),
        "descriptions": tfds.features.Sequence(tfds.features.Text()),
        "fps": tfds.features.Scalar(dtype=np.float32),
    })
    return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True,
                                 metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split, examples) for split, examples in self.split_examples.items()}

  def _generate_examples(self, split, examples):
    metadata = {field: [] for field in METADATA_FIELDS}
    for example in examples:
      metadata["names"].append(example["name"])
      metadata["descriptions"].append(list(example["descriptions"]))
      metadata["frame_index"].append(np.asarray(example["frame_index"]).tolist())
      metadata["fps"].append(float(example["fps"]))
      yield example["name"], example
    self.info.metadata[split] = metadata


def builder_dir(dataset_dir):
  return os.path.join(dataset_dir, BUILDER_NAME, VERSION)


def write(dataset_dir, splits, *, frame_size, wplus_shape):
  """Writes a prepared dataset.

  Args:
    dataset_dir: the output folder; the dataset lands in builder_dir(dataset_dir) in one rename at the end.
    splits: {split name: iterable of example dicts with the fields in the module docstring}.
    frame_size: (height, width) of every frame.
    wplus_shape: (n_latent, style_dim).

  Raises:
    UserError: the disk (or quota) is full or the folder cannot be written; no partial dataset is left.
  """
  remove_incomplete(dataset_dir)  # left by an interrupted earlier write
  builder = VidstyleodeVideos(frame_size=frame_size, wplus_shape=wplus_shape, splits=splits, data_dir=dataset_dir,
                              file_format="array_record")
  try:
    with files.naming_write_failures(builder_dir(dataset_dir)), tempfile.TemporaryDirectory() as download_dir:
      builder.download_and_prepare(download_dir=download_dir)  # tfds downloads nothing here; keeps dataset_dir clean
  except UserError:
    remove_incomplete(dataset_dir)
    raise


def remove_incomplete(dataset_dir):
  """Removes the `incomplete.*` folders of tfds writes that did not finish."""
  for incomplete in glob.glob(os.path.join(os.path.dirname(builder_dir(dataset_dir)), "incomplete.*")):
    shutil.rmtree(incomplete, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
  """One split of a prepared dataset: metadata in memory, videos read on demand by index."""

  names: tuple[str, ...]
  descriptions: tuple[tuple[str, ...], ...]
  frame_index: tuple[np.ndarray, ...]  # per video: [time] int64
  fps: np.ndarray  # [videos] float32
  frame_size: tuple[int, int]
  wplus_shape: tuple[int, int]
  source: object  # tfds ArrayRecordDataSource: source[i] -> example dict of numpy arrays

  def __len__(self):
    return len(self.names)

  def __getitem__(self, video):
    """-> dict(frames [time, H, W, 3] uint8, wplus [time, n_latent, style_dim] float32, ...)."""
    return self.source[video]


def open_split(dataset_dir, split):
  """Opens one split; raises UserError naming the folder and what is wrong."""
  path = builder_dir(dataset_dir)
  if not os.path.isfile(os.path.join(path, "dataset_info.json")):
    raise UserError(
        f"{dataset_dir}: no prepared dataset (expected {path}/dataset_info.json); create it with "
        "`python -m vidstyleode_jax.data.prepare`")
  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise UserError(f"{path}: has no split {split!r}; it holds {sorted(builder.info.splits)}")
  metadata = builder.info.metadata.get(split)
  if metadata is None or set(metadata) != set(METADATA_FIELDS):
    raise UserError(f"{path}/metadata.json: no complete entry for split {split!r}")
  features = builder.info.features
  return PreparedSplit(
      names=tuple(metadata["names"]),
      descriptions=tuple(tuple(d) for d in metadata["descriptions"]),
      frame_index=tuple(np.asarray(f, np.int64) for f in metadata["frame_index"]),
      fps=np.asarray(metadata["fps"], np.float32),
      frame_size=tuple(features["frames"].shape[1:3]),
      wplus_shape=tuple(features["wplus"].shape[1:]),
      source=builder.as_data_source(split=split),
  )
