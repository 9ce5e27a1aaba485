"""Writing files so that none is ever half-written, and the names of what a run's workdir holds.

`atomic_path(path)` yields a temporary path next to `path` (same folder, same extension, hidden name); when the block
succeeds the temporary file is renamed over `path`, when it fails it is removed. A killed process can leave a hidden
temporary file behind but never a truncated `path`. `atomic_file` opens that temporary path; `atomic_folder` does
the same for a folder, whose contents appear all at once. `AppendFile` grows a log file by whole records: a record
that fails half-way is cut off again. A full disk (ENOSPC), a full quota, a read-only target or a missing permission
becomes a UserError naming the file, also when a library written in C++ (orbax's tensorstore, array_record) reports
it only in its message (`naming_write_failures`).

Workdir layout (everything training writes, and the applications and evaluation read):
  config.json       the run's config, model architecture resolved (checkpointing.write_config)
  checkpoints/      orbax checkpoints of the train state
  metrics.jsonl     one JSON object per logged step
  tensorboard/      TensorBoard event files
  samples/          step_<step>.mp4 and .gif sample grids
  tokenizer/        the CLIP vocabulary training built from the data's descriptions, for a CLIP drawn at random
  demo_data/        the demo's rendered videos (train.npz, eval.npz)
  ui/               the web page's example inputs (examples/) and results (outputs/), unless it is given --cache
  evaluation_<held-out set>.json   the default output of `python -m vidstyleode_jax.evaluate`
  train.lock        the host and pid of the trainer working in the workdir (run_lock.py)
  unreadable_checkpoints/  checkpoints that could not be restored, set aside by the resume (checkpointing.py)
"""

import contextlib
import errno
import os
import shutil
import tempfile
import uuid

from vidstyleode_jax.errors import UserError

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
SAMPLES_DIR = "samples"
TOKENIZER_DIR = "tokenizer"
DEMO_DATA_DIR = "demo_data"
UI_DIR = "ui"
EVALUATION_FILE = "evaluation_{held_out}.json"
LOCK_FILE = "train.lock"
UNREADABLE_CHECKPOINTS_DIR = "unreadable_checkpoints"

FILE_MODE = 0o644
FOLDER_MODE = 0o755
_CANNOT_WRITE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}


def _cannot_write_errno(error: BaseException) -> int | None:
  """The errno of _CANNOT_WRITE behind `error` or its causes: an OSError's, or one named in a message only."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _CANNOT_WRITE:
      return error.errno
    for code in _CANNOT_WRITE:
      if os.strerror(code) in str(error):
        return code
    error = error.__cause__ or error.__context__
  return None


def write_failure(error: BaseException, path: str, outcome: str = "nothing was written there") -> BaseException:
  """A UserError for a failure a user must fix (disk full, quota, read-only, no permission); else the error itself.

  The message names `path`, the reason and the `outcome` (what is left on disk).
  """
  code = _cannot_write_errno(error)
  if code is not None:
    return UserError(f"cannot write {path}: {_CANNOT_WRITE[code]}; {outcome}")
  return error


@contextlib.contextmanager
def naming_write_failures(path: str, outcome: str = "nothing was written there"):
  """Raises write_failure's UserError for an error of the block that a user must fix; other errors pass unchanged."""
  try:
    yield
  except UserError:
    raise
  except Exception as error:
    failure = write_failure(error, path, outcome)
    if failure is error:
      raise
    raise failure from None


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path next to `path` to write to; renamed to `path` on success, removed on failure."""
  directory, name = os.path.split(os.path.abspath(path))
  stem, extension = os.path.splitext(name)
  temp_path = os.path.join(directory, f".{stem}.{uuid.uuid4().hex[:8]}.tmp{extension}")
  try:
    with naming_write_failures(path):
      yield temp_path
      os.chmod(temp_path, FILE_MODE)
      os.replace(temp_path, path)
  finally:
    if os.path.lexists(temp_path):
      os.remove(temp_path)


@contextlib.contextmanager
def atomic_file(path: str, binary: bool = False):
  """Yields an open file (text: UTF-8) that becomes `path` when the block succeeds."""
  with atomic_path(path) as temp_path:
    with open(temp_path, "wb") if binary else open(temp_path, "w", encoding="utf-8") as f:
      yield f


def write_text(path: str, text: str) -> None:
  with atomic_file(path) as f:
    f.write(text)


@contextlib.contextmanager
def atomic_folder(path: str, exist_ok: bool = False):
  """Yields a temporary folder next to `path` to fill; renamed to `path` on success, removed on failure.

  With exist_ok, a `path` that appeared in the meantime (another process of the same run wrote it) is kept and the
  temporary folder dropped; without, an existing `path` is a UserError.
  """
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  with naming_write_failures(path):
    os.makedirs(parent, exist_ok=True)
    temp_path = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.partial-", dir=parent)
  try:
    with naming_write_failures(path):
      yield temp_path
      os.chmod(temp_path, FOLDER_MODE)
      try:
        os.rename(temp_path, path)
      except OSError as error:
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not os.path.isdir(path):
          raise
        if not exist_ok:
          raise UserError(f"{path}: already exists; remove it or choose another name") from None
  finally:
    shutil.rmtree(temp_path, ignore_errors=True)


class AppendFile:
  """A file that grows by whole records (JSON lines, TFRecords), each on disk when append returns.

  Opened for appending (created if missing). An append that fails (disk full) is cut off again, so that the file
  never ends in a partial record, and raises write_failure's UserError. Records reach the operating system at once
  (no buffer), so a killed process loses none that it appended.
  """

  def __init__(self, path: str):
    self.path = path
    with naming_write_failures(path):
      self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)

  def append(self, record: bytes) -> None:
    if self._fd is None:
      raise ValueError(f"{self.path} is closed")
    start = os.lseek(self._fd, 0, os.SEEK_END)
    try:
      view = memoryview(record)
      while view:
        view = view[os.write(self._fd, view):]
    except OSError as error:
      os.ftruncate(self._fd, start)
      raise write_failure(error, self.path) from None

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None


def remove_stale_temporaries(folder: str) -> None:
  """Removes the hidden temporary files and folders that killed writers left in `folder`."""
  if not os.path.isdir(folder):
    return
  for name in os.listdir(folder):
    if name.startswith(".") and (".tmp" in name or ".partial-" in name):
      target = os.path.join(folder, name)
      shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else os.remove(target)
