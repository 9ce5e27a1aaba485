"""A full disk (ENOSPC) for the writers of a run: one clear UserError naming the file, and nothing partial left.

The failures are real where the writer's target can be one: the temporary file that files.atomic_path writes
first is made a symlink to /dev/full, which fails every write with ENOSPC, so ffmpeg, Pillow and numpy hit a full
disk themselves; array_record (the prepared dataset) is pointed at /dev/full likewise. Where the file names are not
known in advance (orbax's checkpoint files, appends to the logs), the write call is patched to write part of its
data and then raise OSError(ENOSPC), as a filling disk does.
"""

import errno
import glob
import json
import os
import re
import types

import numpy as np
import pytest
from etils import epath

from vidstyleode_jax import checkpointing
from vidstyleode_jax import files
from vidstyleode_jax import heldout
from vidstyleode_jax import metric_writers
from vidstyleode_jax.apps import applications
from vidstyleode_jax.apps import outputs
from vidstyleode_jax.data import prepared
from vidstyleode_jax.errors import UserError

TEMP_NAME = "0d15c0de"  # the temporary-name part files.atomic_path draws from uuid4 in these tests


@pytest.fixture
def full_temporaries(monkeypatch):
  """Makes every temporary file files.atomic_path writes in a folder a symlink to /dev/full (a disk that is full).

  Returns full(folder, stem, extension): prepares the symlink that a write of folder/stem.extension will use.
  """
  monkeypatch.setattr(files, "uuid", types.SimpleNamespace(uuid4=lambda: types.SimpleNamespace(hex=TEMP_NAME * 4)))

  def full(folder, stem, extension):
    os.symlink("/dev/full", os.path.join(folder, f".{stem}.{TEMP_NAME}.tmp{extension}"))

  return full


def listing(folder):
  return sorted(os.listdir(folder))


def test_sample_videos_on_a_full_disk(tmp_path, full_temporaries):
  columns = {name: np.zeros((2, 3, 8, 8, 3), np.float32) for name in heldout.SAMPLE_COLUMNS}
  samples = tmp_path / files.SAMPLES_DIR
  heldout.write_samples(str(tmp_path), 1, columns, fps=8)
  before = listing(samples)
  full_temporaries(str(samples), "step_0000002", ".mp4")  # ffmpeg's own write fails
  with pytest.raises(UserError, match=r"cannot write .*step_0000002.mp4: no space left on the device"):
    heldout.write_samples(str(tmp_path), 2, columns, fps=8)
  assert listing(samples) == before


def test_gif_sample_on_a_full_disk(tmp_path, full_temporaries):
  columns = {name: np.zeros((2, 3, 8, 8, 3), np.float32) for name in heldout.SAMPLE_COLUMNS}
  os.makedirs(tmp_path / files.SAMPLES_DIR)
  full_temporaries(str(tmp_path / files.SAMPLES_DIR), "step_0000002", ".gif")
  with pytest.raises(UserError, match=r"cannot write .*step_0000002.gif: no space left on the device"):
    heldout.write_samples(str(tmp_path), 2, columns, fps=8)
  assert listing(tmp_path / files.SAMPLES_DIR) == ["step_0000002.mp4"]  # the mp4 was written whole before


@pytest.mark.parametrize("extension", [".mp4", ".gif", ".npy"])
def test_application_outputs_on_a_full_disk(tmp_path, full_temporaries, extension):
  result = applications.Result(np.zeros((3, 8, 8, 3), np.float32), 8.0, {"input": np.zeros((3, 8, 8, 3), np.uint8)})
  video = str(tmp_path / ("out.gif" if extension == ".gif" else "out.mp4"))
  full_temporaries(str(tmp_path), "frames" if extension == ".npy" else "out", extension)
  named = re.escape("frames.npy" if extension == ".npy" else os.path.basename(video))
  with pytest.raises(UserError, match=rf"cannot write \S*{named}: no space left on the device; nothing was written"):
    outputs.write_result(result, video, "edit", frames_path=str(tmp_path / "frames.npy"))
  assert listing(tmp_path) == ([] if extension == ".npy" else ["frames.npy"])


class FillingDisk:
  """Stands in for files.os: os.write to a file whose path contains `full` writes half its data, then fails (ENOSPC).

  Other writes go through.
  """

  def __init__(self):
    self.full = None

  def __getattr__(self, name):
    return getattr(os, name)

  def write(self, fd, data):
    if self.full is None or self.full not in os.readlink(f"/proc/self/fd/{fd}"):
      return os.write(fd, data)
    written = os.write(fd, bytes(data[: len(data) // 2]))
    if written:
      return written
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("record_file", [files.METRICS_FILE, "events.out.tfevents"])
def test_metrics_and_tensorboard_on_a_full_disk(tmp_path, monkeypatch, record_file):
  disk = FillingDisk()
  monkeypatch.setattr(files, "os", disk)
  writer = metric_writers.MetricWriter(str(tmp_path))
  writer.write_scalars(1, {"loss": 1.0})
  events = glob.glob(str(tmp_path / files.TENSORBOARD_DIR / "events.out.tfevents.*"))
  path = str(tmp_path / files.METRICS_FILE) if record_file == files.METRICS_FILE else events[0]
  size = os.path.getsize(path)
  disk.full = record_file
  with pytest.raises(UserError, match=rf"cannot write .*{record_file}.*: no space left on the device"):
    writer.write_scalars(2, {"loss": 0.5})
  writer.close()
  assert os.path.getsize(path) == size  # the half-written record was cut off
  with open(tmp_path / files.METRICS_FILE) as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == ([1] if record_file == files.METRICS_FILE else [1, 2])


def test_checkpoint_on_a_full_disk(tmp_path, monkeypatch):
  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep=3)
  state = {"params": np.arange(6, dtype=np.float32)}
  checkpointer.save(1, state)
  checkpointer.wait()
  real_write_text = type(epath.Path(tmp_path)).write_text

  def filling_write_text(path, text, *args, **kwargs):
    real_write_text(path, text[: len(text) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

  monkeypatch.setattr(type(epath.Path(tmp_path)), "write_text", filling_write_text)  # orbax's metadata files
  with pytest.raises(UserError, match=r"cannot write .*checkpoints: no space left on the device; the unfinished "
                                      r"checkpoint was removed"):
    checkpointer.save(2, {"params": np.arange(6, dtype=np.float32) + 1})
    checkpointer.wait()
  checkpointer.close()
  monkeypatch.undo()
  assert listing(tmp_path / files.CHECKPOINTS_DIR) == ["1"]
  reader = checkpointing.Checkpointer(str(tmp_path))
  np.testing.assert_array_equal(reader.restore(state)["params"], state["params"])
  reader.close()


def test_prepared_dataset_on_a_full_disk(tmp_path, monkeypatch):
  """array_record writes the shards to /dev/full: its own ENOSPC error, and no dataset or incomplete folder left."""
  # The module itself, not tfds's lazy wrapper of it: monkeypatch's undo through the wrapper deletes the writer.
  from array_record.python import array_record_module

  real_writer = array_record_module.ArrayRecordWriter
  monkeypatch.setattr(array_record_module, "ArrayRecordWriter", lambda path, options: real_writer("/dev/full", options))
  examples = [dict(name="v", frames=np.zeros((2, 4, 4, 3), np.uint8), wplus=np.zeros((2, 2, 3), np.float32),
                   frame_index=np.arange(2), descriptions=["a figure"], fps=25.0)]
  with pytest.raises(UserError, match=r"cannot write .*vidstyleode_videos.*: no space left on the device"):
    prepared.write(str(tmp_path), {"train": iter(examples)}, frame_size=(4, 4), wplus_shape=(2, 3))
  assert not os.path.exists(prepared.builder_dir(str(tmp_path)))
  assert not glob.glob(os.path.join(os.path.dirname(prepared.builder_dir(str(tmp_path))), "incomplete.*"))
