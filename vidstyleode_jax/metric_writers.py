"""Scalar logging to TensorBoard event files and to a JSON-lines file in the workdir.

Layout under `workdir`:
  tensorboard/    TensorBoard event files, one per writer: TFRecords of tensorboardX's Event protos, written here
                  synchronously (tensorboardX's SummaryWriter queues them on a thread)
  metrics.jsonl   one JSON object per line: {"step": int, "<name>": float, ...} for scalars,
                  {"hparams": {...}} for hyper-parameters

Both files grow by whole records through files.AppendFile: a killed run keeps every record it wrote, and a full
disk stops the run with a UserError and no partial record (a killed run can still leave a half-written last line,
which the next resume drops). On resume, lines with step >= the resume step are dropped first and TensorBoard is
told to purge its events from that step on, so neither record holds duplicates.
"""

import json
import logging
import os
import socket
import struct
import time
from typing import Any, Mapping

from tensorboardX import summary as tensorboard_summary
from tensorboardX.proto import event_pb2, summary_pb2
from tensorboardX.record_writer import masked_crc32c

from vidstyleode_jax import files


def truncate_jsonl(path: str, step: int) -> None:
  """Drops the scalar lines of the JSONL file at `path` whose step is >= `step`, in place (atomically).

  Lines without a step (hparams) are kept. Malformed lines, normally a last line cut short by a killed run, are
  dropped with a warning. A missing file is left missing.
  """
  if not os.path.exists(path):
    return
  kept = []
  with open(path) as f:
    for line_number, line in enumerate(f, start=1):
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        logging.warning("Dropping malformed line %d of %s: %r", line_number, path, line[:80])
        continue
      if "step" in record and record["step"] >= step:
        continue
      kept.append(json.dumps(record) + "\n")
  with files.atomic_file(path) as f:
    f.writelines(kept)


def tfrecord(payload: bytes) -> bytes:
  """One TFRecord: uint64 length, uint32 masked crc32c of the length bytes, payload, uint32 masked crc32c of it."""
  length = struct.pack("<Q", len(payload))
  return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


class MetricWriter:
  """Writes scalars and hyper-parameters to TensorBoard and to `workdir/metrics.jsonl`.

  Attributes:
    workdir: the run directory.
    enabled: False on processes other than 0 of a multi-host run; every method is then a no-op and no file is
      created.
  """

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int | None = None):
    """Opens (appends to) the JSONL file and a TensorBoard writer.

    Args:
      workdir: run directory; created if missing.
      enabled: when False, nothing is opened or written.
      resume_step: the first step the resumed run will log. JSONL lines with step >= resume_step are dropped and
        TensorBoard purges its events from that step on. None for a fresh run.
    """
    self.workdir = workdir
    self.enabled = enabled
    self._jsonl_file = None
    self._events_file = None
    if not enabled:
      return
    tensorboard_dir = os.path.join(workdir, files.TENSORBOARD_DIR)
    with files.naming_write_failures(tensorboard_dir):
      os.makedirs(tensorboard_dir, exist_ok=True)
    jsonl_path = os.path.join(workdir, files.METRICS_FILE)
    if resume_step is not None:
      truncate_jsonl(jsonl_path, resume_step)
    self._jsonl_file = files.AppendFile(jsonl_path)
    # TensorBoard's file name pattern; the nanosecond suffix keeps two writers opened within one second from sharing
    # a file.
    self._events_file = files.AppendFile(os.path.join(
        tensorboard_dir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{time.time_ns()}"))
    self._write_events([event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")])
    if resume_step is not None:
      # TensorBoard hides the events of earlier files with step >= the step of a SessionLog START.
      start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
      self._write_events([event_pb2.Event(wall_time=time.time(), step=resume_step, session_log=start)])

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Logs `scalars` (name -> number: Python, numpy or jax scalar) at `step` to both records."""
    if not self.enabled:
      return
    step = int(step)
    values = {name: float(value) for name, value in scalars.items()}
    self._write_jsonl({"step": step, **values})
    self._write_events([
        event_pb2.Event(
            wall_time=time.time(), step=step,
            summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=name, simple_value=value)]))
        for name, value in values.items()
    ])

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Logs hyper-parameters: a {"hparams": ...} JSONL line and a TensorBoard text summary.

    Values that JSON cannot hold are written as their str(). On resume the line is written again; readers take the
    last one.
    """
    if not self.enabled:
      return
    record = json.loads(json.dumps(dict(hparams), default=str))
    self._write_jsonl({"hparams": record})
    pretty = json.dumps(record, indent=2, sort_keys=True)
    text = tensorboard_summary.text("hparams", "```\n" + pretty + "\n```")
    self._write_events([event_pb2.Event(wall_time=time.time(), step=0, summary=text)])

  def close(self) -> None:
    """Closes both files; further writes raise. Safe to call twice."""
    if self._jsonl_file is not None:
      self._jsonl_file.close()
      self._jsonl_file = None
    if self._events_file is not None:
      self._events_file.close()
      self._events_file = None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _write_jsonl(self, record: dict) -> None:
    if self._jsonl_file is None:
      raise ValueError(f"MetricWriter for {self.workdir} is closed.")
    self._jsonl_file.append((json.dumps(record) + "\n").encode())

  def _write_events(self, events: list[event_pb2.Event]) -> None:
    self._events_file.append(b"".join(tfrecord(event.SerializeToString()) for event in events))
