"""Writing files so that none is ever half-written, and the names of what a run's workdir holds.

`atomic_path(path)` yields a temporary path next to `path` (same folder, same extension, hidden name); when the block
succeeds the temporary file is renamed over `path`, when it fails it is removed. A killed process can leave a hidden
temporary file behind but never a truncated `path`. `atomic_file` opens that temporary path; `atomic_folder` does
the same for a folder, whose contents appear all at once. A full disk (ENOSPC) or a read-only target becomes a
UserError naming the file.

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

FILE_MODE = 0o644
FOLDER_MODE = 0o755
_CANNOT_WRITE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}


def write_failure(error: OSError, path: str) -> Exception:
  """A UserError for an OSError that a user must fix (disk full, read-only, no permission); else the error itself."""
  if error.errno in _CANNOT_WRITE:
    return UserError(f"cannot write {path}: {_CANNOT_WRITE[error.errno]}; nothing was written there")
  return error


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path next to `path` to write to; renamed to `path` on success, removed on failure."""
  directory, name = os.path.split(os.path.abspath(path))
  stem, extension = os.path.splitext(name)
  temp_path = os.path.join(directory, f".{stem}.{uuid.uuid4().hex[:8]}.tmp{extension}")
  try:
    yield temp_path
    os.chmod(temp_path, FILE_MODE)
    os.replace(temp_path, path)
  except OSError as error:
    raise write_failure(error, path) from None
  finally:
    if os.path.exists(temp_path):
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
  try:
    os.makedirs(parent, exist_ok=True)
    temp_path = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.partial-", dir=parent)
  except OSError as error:
    raise write_failure(error, path) from None
  try:
    yield temp_path
    os.chmod(temp_path, FOLDER_MODE)
    try:
      os.rename(temp_path, path)
    except OSError as error:
      if error.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not os.path.isdir(path):
        raise
      if not exist_ok:
        raise UserError(f"{path}: already exists; remove it or choose another name") from None
  except OSError as error:
    raise write_failure(error, path) from None
  finally:
    shutil.rmtree(temp_path, ignore_errors=True)


def remove_stale_temporaries(folder: str) -> None:
  """Removes the hidden temporary files and folders that killed writers left in `folder`."""
  if not os.path.isdir(folder):
    return
  for name in os.listdir(folder):
    if name.startswith(".") and (".tmp" in name or ".partial-" in name):
      target = os.path.join(folder, name)
      shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else os.remove(target)
