"""Deterministic clip sampling (docs/model.md §2.2-§2.3) and host-local batches read through a video source.

A batch is a function of (seed, step) alone, so a resumed run sees exactly the batches it would have seen, and
every host computes the same global plan and then reads only its own rows of it.

Each video has its usable frame numbers: its stored frames after the first skip_frames, re-based so that the first
kept frame is 0. Per step, the videos come from a per-epoch permutation of the training set (consecutive groups of
batch_size videos form the batches); the clip's frame numbers are frame 0 plus frames_per_clip - 1 distinct later
frames, sorted, and shared by every video of the batch: they are drawn from the intersection of the batch's usable
frame numbers. With a clip span (`data.clip_span` > 0, docs/model.md §21.9) the clip lies in a window of that many
consecutive shared frame numbers at a random start: the window's first frame plus frames_per_clip - 1 later ones.

Videos are read through a video source (data/sources.py), whatever the dataset kind:
  source.frame_numbers[v]              [frames] int64 usable frame numbers of video v
  source.clip(v, frame_numbers)        -> (frames [T, H, W, 3] uint8, wplus [T, n_latent, style_dim] float32)
"""

import concurrent.futures
import functools
import queue
import threading

import numpy as np


def usable_frame_numbers(frame_index, skip_frames):
  """frame_index: [stored frames] source frame numbers -> [stored frames - skip_frames] int64, starting at 0."""
  kept = np.asarray(frame_index, np.int64)[skip_frames:]
  return kept - kept[0] if kept.size else kept


def shared_frame_numbers(frame_numbers, video_ids):
  """The frame numbers that all of the given videos have: [shared] int64, sorted."""
  return functools.reduce(np.intersect1d, [frame_numbers[v] for v in video_ids])


class ClipSampler:
  """Plans batches: which videos and which frame numbers, for a given step."""

  def __init__(self, frame_numbers, *, batch_size, frames_per_clip, seed, clip_span=0):
    """frame_numbers: per video, its usable frame numbers ([frames] int, sorted, starting at 0); clip_span: 0 (clips
    over the whole video, as the original) or the window, in shared frame numbers, that holds each clip."""
    self.frame_numbers = tuple(np.asarray(f, np.int64) for f in frame_numbers)
    self.batch_size = batch_size
    self.frames_per_clip = frames_per_clip
    self.seed = seed
    self.clip_span = clip_span
    num_videos = len(self.frame_numbers)
    if num_videos < batch_size:
      raise ValueError(f"{num_videos} training videos cannot fill a batch of {batch_size}")
    too_short = [v for v, f in enumerate(self.frame_numbers) if len(f) < frames_per_clip]
    if too_short:
      raise ValueError(f"videos {too_short[:5]} have fewer than frames_per_clip={frames_per_clip} frames")
    self.batches_per_epoch = num_videos // batch_size

  def plan(self, step):
    """-> (video_ids [batch] int, frame_numbers [frames_per_clip] int64, sorted; starting at 0 without a clip span)."""
    epoch, position = divmod(step, self.batches_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.frame_numbers))
    video_ids = np.sort(order[position * self.batch_size:(position + 1) * self.batch_size])
    shared = shared_frame_numbers(self.frame_numbers, video_ids)
    if len(shared) < self.frames_per_clip:
      raise ValueError(
          f"step {step}: videos {video_ids.tolist()} share only {len(shared)} frame numbers, fewer than "
          f"frames_per_clip={self.frames_per_clip}")
    rng = np.random.default_rng([self.seed, epoch, position, 1])
    if self.clip_span:
      start = rng.integers(max(len(shared) - self.clip_span, 0) + 1)
      shared = shared[start:start + self.clip_span]
    later = rng.choice(shared[1:], size=self.frames_per_clip - 1, replace=False)
    return video_ids, np.concatenate([shared[:1], np.sort(later)])


def make_batch(videos, tokens, video_ids, frame_numbers, video_length, pool=None):
  """Reads one batch through a video source, one clip per video (in parallel on `pool`, an Executor, if given).

  Returns a dict of numpy arrays with a leading batch axis: frames [b, T, H, W, 3] uint8, wplus [b, T, L, S],
  tokens [b, context] int32, times [b, T] float32 (frame_numbers / video_length, identical rows),
  video_ids [b] int32, stop_votes [b] float32 zeros (a process that was asked to stop sets its rows to 1: see
  vidstyleode_jax/stopping.py). The rows follow video_ids whatever the number of threads.
  """
  read = map if pool is None else pool.map
  clips = list(read(lambda video: videos.clip(video, frame_numbers), video_ids))
  times = (np.asarray(frame_numbers) / video_length).astype(np.float32)
  return dict(
      frames=np.stack([frames for frames, _ in clips]),
      wplus=np.stack([wplus for _, wplus in clips]),
      tokens=tokens[video_ids].astype(np.int32),
      times=np.broadcast_to(times, (len(video_ids), len(times))).copy(),
      video_ids=np.asarray(video_ids, np.int32),
      stop_votes=np.zeros(len(video_ids), np.float32),
  )


def host_rows(global_batch_size, process_index, process_count):
  """The rows of a global batch that one host loads."""
  if global_batch_size % process_count:
    raise ValueError(f"batch_size {global_batch_size} is not divisible by the {process_count} processes")
  per_host = global_batch_size // process_count
  return slice(process_index * per_host, (process_index + 1) * per_host)


def training_batches(videos, tokens, sampler, *, video_length, first_step, process_index=0, process_count=1,
                     read_threads=1):
  """Yields (step, host-local batch) from first_step on; each batch's clips are read by read_threads threads."""
  rows = host_rows(sampler.batch_size, process_index, process_count)
  with concurrent.futures.ThreadPoolExecutor(read_threads, thread_name_prefix="read_clips") as pool:
    step = first_step
    while True:
      video_ids, frame_numbers = sampler.plan(step)
      yield step, make_batch(videos, tokens, video_ids[rows], frame_numbers, video_length, pool)
      step += 1


class _Failed:
  def __init__(self, error):
    self.error = error


def prefetch(iterator, size=2):
  """Runs `iterator` in a background thread, keeping up to `size` items ready.

  An exception in the iterator is raised here, at the item where it happened. Closing this generator (or dropping
  it) stops the thread and closes `iterator`.
  """
  items = queue.Queue(maxsize=size)
  stop = threading.Event()
  done = object()

  def put(item):
    while not stop.is_set():
      try:
        items.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def produce():
    try:
      for item in iterator:
        if not put(item):
          return
      put(done)
    except Exception as error:  # handed to the consumer, which raises it
      put(_Failed(error))
    finally:
      if hasattr(iterator, "close"):
        iterator.close()

  thread = threading.Thread(target=produce, daemon=True, name="prefetch")
  thread.start()
  try:
    while (item := items.get()) is not done:
      if isinstance(item, _Failed):
        raise item.error
      yield item
  finally:
    stop.set()
