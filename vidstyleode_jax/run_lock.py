"""One trainer per workdir: WORKDIR/train.lock names the process that trains there.

`hold(workdir)` creates the lock file (exclusively: of two trainers starting at once, one creates it) holding the
host name, the pid and the process's start time, and removes it when the run ends, however it ends short of a kill.
A second trainer finds the file and refuses with a UserError naming the holder.

A lock left behind by a killed run (SIGKILL, out of memory) does not block the next one: when the file names this
host and no process with that pid and start time lives here (or it is a zombie), the new trainer takes the lock
over and logs a warning. The start time guards against a new, unrelated process having received the old pid.

Several hosts on a shared filesystem: in a multi-process run only process 0 takes the lock, and every process learns
whether it got it. A trainer cannot see another host's processes, so a lock naming another host is never taken
over: the message names that host and pid, and the file must be deleted by hand once that run is known to be gone
(for example after a machine failed).
"""

import contextlib
import json
import os
import socket
import uuid

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from vidstyleode_jax import files
from vidstyleode_jax.errors import UserError


def _start_time(pid):
  """The start time of process `pid` (clock ticks after boot, /proc/PID/stat); None if it is gone or a zombie.

  Where /proc is missing (not Linux), "" if a process with that pid exists.
  """
  try:
    with open(f"/proc/{pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
  except FileNotFoundError:
    if os.path.isdir("/proc"):
      return None
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return None
    except PermissionError:
      pass
    return ""
  return None if fields[0] in ("Z", "X") else fields[19]


def _owner():
  return {"host": socket.gethostname(), "pid": os.getpid(), "start_time": _start_time(os.getpid())}


def _is_stale(holder):
  """Whether the lock holder `holder` (the file's JSON) is a process of this host that no longer runs."""
  if holder.get("host") != socket.gethostname():
    return False
  started = _start_time(holder.get("pid"))
  return started is None or started != holder.get("start_time")


def _read(path):
  """The holder recorded in the lock file; {} if the file is empty or unreadable, None if it is gone."""
  try:
    with open(path) as f:
      return json.loads(f.read() or "{}")
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}


def _create(path, text):
  """Creates `path` holding `text` unless it exists; returns whether it did."""
  with files.naming_write_failures(path):
    try:
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, files.FILE_MODE)
    except FileExistsError:
      return False
    try:
      os.write(fd, text.encode())
    except OSError:
      os.remove(path)
      raise
    finally:
      os.close(fd)
  return True


def _remove_if(path, holder):
  """Removes the lock file if it still names `holder`; a file some other trainer created in the meantime stays."""
  aside = f"{path}.{uuid.uuid4().hex[:8]}.stale"
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return
  if _read(aside) != holder:
    os.rename(aside, path)
  else:
    os.remove(aside)


def acquire(workdir):
  """Takes the lock of `workdir` for this process; returns its JSON text. Raises UserError if another run holds it."""
  path = os.path.join(workdir, files.LOCK_FILE)
  owner = json.dumps(_owner())
  while not _create(path, owner):
    holder = _read(path)
    if holder is None:
      continue
    if not _is_stale(holder):
      who = f"process {holder['pid']} on host {holder['host']}" if holder else "an unknown process"
      raise UserError(
          f"{workdir} is in use: {path} says that {who} trains there. Stop that run first, or choose another "
          f"--workdir; if that run is gone (e.g. its machine failed), delete {path}")
    logging.warning("Taking over %s from process %s on %s, which is gone", path, holder["pid"], holder["host"])
    _remove_if(path, holder)
  return owner


def release(workdir, owner):
  """Removes the lock file if it is still `owner`'s."""
  path = os.path.join(workdir, files.LOCK_FILE)
  holder = _read(path)
  if holder is not None and holder == json.loads(owner):
    os.remove(path)


@contextlib.contextmanager
def hold(workdir):
  """Holds the lock of `workdir` (created if missing) for the block; process 0 alone takes it in a multi-process run.

  Raises UserError on every process if process 0 could not take it.
  """
  os.makedirs(workdir, exist_ok=True)
  owner, refusal = None, None
  if jax.process_index() == 0:
    try:
      owner = acquire(workdir)
    except UserError as error:
      refusal = error
  if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(np.int32(refusal is None)):
    refusal = refusal or UserError(f"{workdir} is in use by another run (process 0 could not take "
                                   f"{os.path.join(workdir, files.LOCK_FILE)}; see its log)")
  if refusal is not None:
    raise refusal
  try:
    yield
  finally:
    if owner is not None:
      release(workdir, owner)
