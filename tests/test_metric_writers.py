"""MetricWriter: JSONL and TensorBoard records, flushing, resume truncation, disabled writers."""

import glob
import json
import os
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c

from vidstyleode_jax import files
from vidstyleode_jax import metric_writers


def read_jsonl(workdir):
  with open(os.path.join(workdir, files.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def read_events(workdir):
  """All events of all TensorBoard files under workdir, oldest file first, checking the TFRecord CRCs.

  A TFRecord is: uint64 length, uint32 masked crc32c(length bytes), payload, uint32 masked crc32c(payload).
  """
  paths = sorted(glob.glob(os.path.join(workdir, files.TENSORBOARD_DIR, "events.out.tfevents.*")))
  events = []
  for path in paths:
    with open(path, "rb") as f:
      data = f.read()
    offset = 0
    while offset < len(data):
      length_bytes = data[offset:offset + 8]
      (length,) = struct.unpack("<Q", length_bytes)
      (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
      assert length_crc == masked_crc32c(length_bytes)
      payload = data[offset + 12:offset + 12 + length]
      (payload_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
      assert payload_crc == masked_crc32c(payload)
      events.append(event_pb2.Event.FromString(payload))
      offset += 16 + length
  return events


def scalar_events(workdir):
  """[(tag, step, value)] of the scalar summaries, in file order."""
  return [(value.tag, event.step, value.simple_value)
          for event in read_events(workdir) if event.HasField("summary")
          for value in event.summary.value if value.HasField("simple_value")]


def test_scalars_round_trip_through_jsonl_and_tensorboard(tmp_path):
  workdir = str(tmp_path / "run")
  with metric_writers.MetricWriter(workdir) as writer:
    writer.write_scalars(1, {"loss": np.float32(0.5), "lr": 1e-3})
    writer.write_scalars(np.int64(2), {"loss": 0.25, "lr": 2})

  assert read_jsonl(workdir) == [{"step": 1, "loss": 0.5, "lr": 1e-3}, {"step": 2, "loss": 0.25, "lr": 2.0}]
  events = scalar_events(workdir)
  assert [(tag, step) for tag, step, _ in events] == [("loss", 1), ("lr", 1), ("loss", 2), ("lr", 2)]
  # TensorBoard stores float32.
  np.testing.assert_allclose([value for *_, value in events], [0.5, 1e-3, 0.25, 2.0], rtol=1e-7)


def test_hparams_go_to_jsonl_and_tensorboard_text(tmp_path):
  workdir = str(tmp_path)
  with metric_writers.MetricWriter(workdir) as writer:
    writer.write_hparams({"lr": 1e-4, "frames": 8, "size": (256, 192), "name": "demo"})

  assert read_jsonl(workdir) == [{"hparams": {"lr": 1e-4, "frames": 8, "size": [256, 192], "name": "demo"}}]
  texts = [value.tensor.string_val[0].decode()
           for event in read_events(workdir) if event.HasField("summary")
           for value in event.summary.value if value.tag.startswith("hparams")]
  assert len(texts) == 1
  assert '"lr": 0.0001' in texts[0] and '"name": "demo"' in texts[0]


def test_every_write_is_on_disk_before_close(tmp_path):
  """A run killed without close() keeps everything it logged."""
  workdir = str(tmp_path)
  writer = metric_writers.MetricWriter(workdir)
  writer.write_scalars(3, {"loss": 1.5})
  assert read_jsonl(workdir) == [{"step": 3, "loss": 1.5}]
  assert scalar_events(workdir) == [("loss", 3, 1.5)]
  writer.close()


def test_resume_drops_steps_at_and_after_resume_step(tmp_path):
  workdir = str(tmp_path)
  writer = metric_writers.MetricWriter(workdir)
  writer.write_hparams({"lr": 0.1})
  for step in range(10):
    writer.write_scalars(step, {"loss": float(step)})
  writer.close()
  # A run killed mid-write leaves a cut-off last line.
  with open(os.path.join(workdir, files.METRICS_FILE), "a") as f:
    f.write('{"step": 10, "lo')

  with metric_writers.MetricWriter(workdir, resume_step=6) as writer:
    for step in range(6, 8):
      writer.write_scalars(step, {"loss": 100.0 + step})

  records = read_jsonl(workdir)
  assert records[0] == {"hparams": {"lr": 0.1}}
  assert [(r["step"], r["loss"]) for r in records[1:]] == (
      [(step, float(step)) for step in range(6)] + [(6, 106.0), (7, 107.0)])
  # The resumed run adds a second event file (the first one is kept), which starts with a purge marker at the resume
  # step (a SessionLog START) so that TensorBoard hides the first file's steps >= 6.
  assert len(glob.glob(os.path.join(workdir, files.TENSORBOARD_DIR, "*"))) == 2
  assert [step for _, step, _ in scalar_events(workdir)] == list(range(10)) + [6, 7]
  purge_markers = [event.step for event in read_events(workdir)
                   if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START]
  assert purge_markers == [6]


def test_truncate_jsonl_keeps_earlier_steps_and_ignores_missing_file(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  metric_writers.truncate_jsonl(path, 3)
  assert not os.path.exists(path)
  with open(path, "w") as f:
    f.writelines(json.dumps({"step": step, "x": step}) + "\n" for step in (0, 2, 3, 5, 1))
  metric_writers.truncate_jsonl(path, 3)
  with open(path) as f:
    assert [json.loads(line)["step"] for line in f] == [0, 2, 1]


def test_disabled_writer_writes_nothing(tmp_path):
  workdir = tmp_path / "other_host"
  with metric_writers.MetricWriter(str(workdir), enabled=False, resume_step=4) as writer:
    writer.write_hparams({"lr": 0.1})
    writer.write_scalars(1, {"loss": 1.0})
  assert not workdir.exists()


def test_write_after_close_raises(tmp_path):
  writer = metric_writers.MetricWriter(str(tmp_path))
  writer.close()
  writer.close()
  with pytest.raises(ValueError, match="closed"):
    writer.write_scalars(0, {"loss": 1.0})
