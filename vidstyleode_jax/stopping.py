"""Stopping a training run before its last step: on SIGTERM or SIGINT, and after too many bad steps in a row.

Signals. Inside `Signals()`, the first SIGTERM or SIGINT only records a request to stop: train.py finishes the steps
in flight, saves a checkpoint at the step it reached, writes that step's metrics and returns (exit status 0) with a
line saying where it stopped. The handlers then fall back to the system's default, so a second signal ends the
process at once, even in the middle of a long XLA call, without a checkpoint.

Agreement between processes. A signal may reach one process of a multi-process run, or reach them at different
steps, yet all must save the same step together. Each process puts its request into its rows of the next batch
(`Signals.votes`); the train step returns the maximum over the whole batch (train_step.make_train_step), so every
process reads the same vote for the same step. `StepReview` reads a step's vote (and its skip flag) one step late,
while the device runs the next step, so the loop does not wait for the device. The vote rides on the first step
dispatched after the handler ran and is read while the step after it runs: the run stops two or three steps after
the signal, at the same step on every process.

Bad steps. The train step skips a bad step (non-finite loss or gradients, or a failed ODE solve) and flags
it; `StepReview` logs each one with what went bad and raises a UserError after train.max_consecutive_skips bad
steps in a row, naming the step and the metric.
"""

import signal
import sys
import threading

import jax
import numpy as np
from absl import logging

from vidstyleode_jax import train_step
from vidstyleode_jax.errors import UserError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Signals:
  """A context in which the first SIGTERM / SIGINT is a request to stop (`received` names it) and a second one kills.

  Outside the main thread (where Python cannot install handlers) the signals keep their usual effect.
  """

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {number: signal.signal(number, self._handle) for number in SIGNALS}
    return self

  def __exit__(self, *exc_info):
    for number, handler in self._previous.items():
      signal.signal(number, handler)

  def _handle(self, number, frame):
    del frame
    self.received = signal.Signals(number).name
    for other in SIGNALS:
      signal.signal(other, signal.SIG_DFL)
    print(f"train: {self.received} received: finishing the steps in flight, then saving a checkpoint; send it again "
          "to stop at once without one", file=sys.stderr, flush=True)

  def votes(self, rows):
    """This process's rows of the batch's "stop_votes": [rows] float32, 1.0 once a signal was received."""
    return np.full((rows,), float(self.received is not None), np.float32)


class StepReview:
  """Reads the skip flag and the stop vote of every dispatched step, and stops the run after too many bad steps.

  Attributes:
    stop_voted: whether a reviewed step carried a stop vote of some process.
  """

  def __init__(self, max_consecutive_skips):
    self.max_consecutive_skips = max_consecutive_skips
    self.stop_voted = False
    self._bad_in_a_row = 0
    self._skipped = 0
    self._pending = []

  def add(self, step, metrics):
    """Queues a dispatched step: `step` completed steps after it, `metrics` its (device) metrics."""
    self._pending.append((step, metrics))

  def review(self, keep_newest=False):
    """Reads the flags of the queued steps, but the newest one with keep_newest (its result is not due yet).

    Raises:
      UserError: when max_consecutive_skips steps in a row were bad.
    """
    due = self._pending[:-1] if keep_newest else self._pending
    self._pending = self._pending[len(due):]
    for step, metrics in due:
      skipped, vote = jax.device_get((metrics["train/skipped"], metrics["train/stop_vote"]))
      self.stop_voted |= bool(vote > 0)
      if not skipped:
        self._bad_in_a_row = 0
        continue
      self._bad_in_a_row += 1
      self._skipped += 1
      reason = train_step.bad_step_reason(jax.device_get(metrics))
      logging.warning("Step %d skipped, params and optimizer state left unchanged: %s", step, reason)
      if self._bad_in_a_row >= self.max_consecutive_skips:
        raise UserError(
            f"{self._bad_in_a_row} bad steps in a row (train.max_consecutive_skips={self.max_consecutive_skips}), "
            f"the last at step {step}: {reason}. None of them changed the params, and the last checkpoint holds the "
            "last good state: lower the learning rate or check the data, then run again to resume from it")

  def take_skipped_count(self):
    """The number of skipped steps reviewed since the last call."""
    count, self._skipped = self._skipped, 0
    return count
