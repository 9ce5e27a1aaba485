"""Deterministic clip sampling (architecture.md §2.3) and host-local batches.

A batch is a function of (seed, step) alone, so a resumed run sees exactly the batches it would have seen, and
every host computes the same global plan and then reads only its own rows of it.

Per step: the videos come from a per-epoch permutation of the training set; the clip's frame numbers are frame 0
plus frames_per_clip - 1 distinct later frames, sorted, and shared by every video of the batch (they are drawn
from the frames that all of the batch's videos have).
"""

import queue
import threading

import numpy as np


class ClipSampler:
  """Plans batches: which videos and which frame numbers, for a given step."""

  def __init__(self, frames_per_video, *, batch_size, frames_per_clip, seed):
    self.frames_per_video = np.asarray(frames_per_video)
    self.batch_size = batch_size
    self.frames_per_clip = frames_per_clip
    self.seed = seed
    num_videos = len(self.frames_per_video)
    if num_videos < batch_size:
      raise ValueError(f"{num_videos} training videos cannot fill a batch of {batch_size}")
    too_short = np.flatnonzero(self.frames_per_video < frames_per_clip)
    if too_short.size:
      raise ValueError(f"videos {too_short[:5].tolist()} have fewer than frames_per_clip={frames_per_clip} frames")
    self.batches_per_epoch = num_videos // batch_size

  def plan(self, step):
    """-> (video_ids [batch] int, frame_numbers [frames_per_clip] int, sorted, starting at 0)."""
    epoch, position = divmod(step, self.batches_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.frames_per_video))
    video_ids = np.sort(order[position * self.batch_size:(position + 1) * self.batch_size])
    usable = int(self.frames_per_video[video_ids].min())
    rng = np.random.default_rng([self.seed, epoch, position, 1])
    later = rng.choice(np.arange(1, usable), size=self.frames_per_clip - 1, replace=False)
    return video_ids, np.concatenate([[0], np.sort(later)])


def make_batch(videos, tokens, video_ids, frame_numbers, video_length):
  """Gathers one batch from in-memory videos.

  Returns a dict of numpy arrays with a leading batch axis: frames [b, T, H, W, 3] uint8, wplus [b, T, L, S],
  tokens [b, context] int32, times [b, T] float32 (frame_numbers / video_length, identical rows),
  video_ids [b] int32.
  """
  times = (frame_numbers / video_length).astype(np.float32)
  return dict(
      frames=videos.frames[video_ids][:, frame_numbers],
      wplus=videos.wplus[video_ids][:, frame_numbers],
      tokens=tokens[video_ids].astype(np.int32),
      times=np.broadcast_to(times, (len(video_ids), len(times))).copy(),
      video_ids=np.asarray(video_ids, np.int32),
  )


def host_rows(global_batch_size, process_index, process_count):
  """The rows of a global batch that one host loads."""
  if global_batch_size % process_count:
    raise ValueError(f"batch_size {global_batch_size} is not divisible by the {process_count} processes")
  per_host = global_batch_size // process_count
  return slice(process_index * per_host, (process_index + 1) * per_host)


def training_batches(videos, tokens, sampler, *, video_length, first_step, process_index=0, process_count=1):
  """Yields (step, host-local batch) from first_step on."""
  rows = host_rows(sampler.batch_size, process_index, process_count)
  step = first_step
  while True:
    video_ids, frame_numbers = sampler.plan(step)
    yield step, make_batch(videos, tokens, video_ids[rows], frame_numbers, video_length)
    step += 1


def prefetch(iterator, size=2):
  """Runs `iterator` in a background thread, keeping up to `size` items ready."""
  items = queue.Queue(maxsize=size)
  done = object()

  def produce():
    for item in iterator:
      items.put(item)
    items.put(done)

  threading.Thread(target=produce, daemon=True).start()
  while (item := items.get()) is not done:
    yield item
