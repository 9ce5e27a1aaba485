"""The raw inputs of dataset preparation: video files and frame folders, their descriptions, and split lists.

A videos folder holds video files (VIDEO_EXTENSIONS) and/or sub-folders of frame images (FRAME_EXTENSIONS), as the
official `img_root/<video>/000.png, ...` layout (docs/model.md §2.1). A video's name is its file stem or folder
name. Frames of a folder are ordered by the number in their file stem, parsed as the original does (§2.2): the last
`_`-separated token with non-digits stripped from both ends.

`FrameFormat` turns decoded frames into the model's input, here and in the applications: the first `skip_frames`
frames (in frame order, as the original skips the first directory entries) are dropped, and every other frame is
center-cropped to the generator's aspect ratio and resized to the config's height x width with PIL's antialiased
bilinear filter.

Problems with one video raise UnusableVideo (the caller skips it and reports why); problems with the inputs as a
whole (an unreadable descriptions table or split list) raise UserError.
"""

import csv
import dataclasses
import hashlib
import json
import os
import re

import imageio_ffmpeg
import numpy as np
from PIL import Image

from vidstyleode_jax.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
FOLDER_DESCRIPTION_FILE = "text_descriptions.txt"
# A file whose decoded frame count falls below this fraction of duration x fps (as the container states them) is
# taken as truncated; containers round their durations, so a few frames of slack are allowed.
TRUNCATION_FRACTION = 0.9
TRUNCATION_SLACK_FRAMES = 2


class UnusableVideo(UserError):
  """One video cannot be used; `path` is the offending file or folder and `reason` says why."""

  def __init__(self, path, reason):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class VideoInput:
  """One video of the videos folder: a file (kind "file") or a folder of frames (kind "frames")."""

  name: str
  path: str
  kind: str


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  """A video's kept frames after skip_frames, resized and cropped.

  frames: [time, height, width, 3] uint8.
  frame_index: [time] int64 source frame numbers (decoded position for files, parsed stem number for folders).
  fps: the container's frame rate, 0.0 for frame folders.
  stems: the frame files' stems (frame folders), or None (video files).
  """

  frames: np.ndarray
  frame_index: np.ndarray
  fps: float
  stems: tuple[str, ...] | None


def find_inputs(videos_dir, exclude=()):
  """The videos in videos_dir, sorted by name; hidden entries and the folders in `exclude` are left out."""
  if not os.path.isdir(videos_dir):
    raise UserError(f"{videos_dir}: no such videos folder")
  excluded = {os.path.realpath(path) for path in exclude}
  found = []
  for entry in sorted(os.listdir(videos_dir)):
    path = os.path.join(videos_dir, entry)
    if entry.startswith(".") or os.path.realpath(path) in excluded:
      continue
    stem, extension = os.path.splitext(entry)
    if os.path.isdir(path):
      found.append(VideoInput(entry, path, "frames"))
    elif extension.lower() in VIDEO_EXTENSIONS:
      found.append(VideoInput(stem, path, "file"))
  return sorted(found, key=lambda video: (video.name, video.path))


def frame_number(stem):
  """The original's frame number of a file stem: last `_`-separated token, non-digits stripped at both ends."""
  digits = re.sub(r"^\D+|\D+$", "", stem.split("_")[-1])
  return int(digits) if digits.isdigit() else None


def frame_files(folder):
  """[(frame number, path)] of a frame folder's images, sorted by number."""
  numbered = {}
  for entry in os.listdir(folder):
    stem, extension = os.path.splitext(entry)
    if entry.startswith(".") or extension.lower() not in FRAME_EXTENSIONS:
      continue
    number = frame_number(stem)
    path = os.path.join(folder, entry)
    if number is None:
      raise UnusableVideo(path, "the file name holds no frame number")
    if number in numbered:
      raise UnusableVideo(path, f"frame number {number} also belongs to {os.path.basename(numbered[number])}")
    numbered[number] = path
  return sorted(numbered.items())


@dataclasses.dataclass(frozen=True)
class FrameFormat:
  """How decoded frames become the model's input, in dataset preparation and in the applications alike.

  A frame is cropped, centered, to the generator's aspect ratio (the framing the generator renders), and that crop
  is resized to height x width. The generator's renders are resized to height x width in the same way (squashed
  when the two aspect ratios differ, as fashion's 1024x512 renders and 256x192 frames are), so real and rendered
  frames show the same picture. The first skip_frames frames of a video are dropped.

  height, width: config.data.height, width; aspect: height / width of the generator's output (generator.aspect);
  skip_frames: config.data.skip_frames.
  """

  height: int
  width: int
  aspect: int = 1
  skip_frames: int = 0

  @classmethod
  def of(cls, config):
    """The format of a resolved config (its generator's architecture known)."""
    return cls(config.data.height, config.data.width, config.generator.aspect, config.data.skip_frames)

  def resize(self, image):
    """A PIL image -> [height, width, 3] uint8: its centered crop of the generator's aspect, resized.

    The crop is taken in source coordinates (PIL's `box`), so cropping and resizing are one antialiased bilinear
    resampling.
    """
    source_width, source_height = image.size
    scale = min(source_width, source_height / self.aspect)
    box_width, box_height = scale, scale * self.aspect
    left, top = (source_width - box_width) / 2, (source_height - box_height) / 2
    box = (left, top, left + box_width, top + box_height)
    return np.asarray(image.convert("RGB").resize((self.width, self.height), Image.Resampling.BILINEAR, box=box))

  def frames(self, native_frames, skip=True):
    """Decoded frames -> the model's input.

    Args:
      native_frames: an iterable of [h, w, 3] uint8 frames as decoded, consumed one frame at a time (a long video
        is never held at its native size).
      skip: drop the first skip_frames frames (a video) or not (a still image, a mask).

    Returns:
      (frames [time, height, width, 3] uint8, the number of frames read, dropped ones included).
    """
    first = self.skip_frames if skip else 0
    kept, count = [], 0
    for count, frame in enumerate(native_frames, start=1):
      if count > first:
        kept.append(self.resize(Image.fromarray(np.asarray(frame, np.uint8))))
    return (np.stack(kept) if kept else np.zeros((0, self.height, self.width, 3), np.uint8)), count


def file_frames(path):
  """-> (iterator of [h, w, 3] uint8 frames, fps, frame count the container states) of a video file.

  Decoded one frame at a time by the ffmpeg of imageio-ffmpeg. Raises UnusableVideo for an empty or undecodable
  file (the iterator raises it for a file that breaks off mid-way).
  """
  if os.path.getsize(path) == 0:
    raise UnusableVideo(path, "empty file (0 bytes)")

  def cannot_decode(error):
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UnusableVideo(path, f"cannot be decoded ({first_line})")

  decode_errors = (OSError, RuntimeError, ValueError, KeyError, StopIteration)  # what imageio-ffmpeg raises
  try:
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    width, height = meta["size"]
  except decode_errors as error:
    raise cannot_decode(error) from None

  def frames():
    try:
      for frame in reader:
        yield np.frombuffer(frame, np.uint8).reshape(height, width, 3)
    except decode_errors as error:
      raise cannot_decode(error) from None

  fps = float(meta.get("fps") or 0.0)
  return frames(), fps, float(meta.get("duration") or 0.0) * fps


def _folder_frames(numbered):
  for _, path in numbered:
    try:
      with Image.open(path) as image:
        yield np.asarray(image.convert("RGB"))
    except OSError as error:  # PIL raises UnidentifiedImageError (an OSError) or OSError on a broken file
      raise UnusableVideo(path, f"unreadable image ({error})") from None


def decode(video, frame_format, min_frames):
  """Decodes a video's frames into the model's input (`FrameFormat.frames`).

  Args:
    video: a VideoInput.
    frame_format: a FrameFormat.
    min_frames: frames that must remain after skipping (one clip).

  Returns:
    DecodedVideo.

  Raises:
    UnusableVideo: the file is empty, corrupt or truncated, a frame is unreadable, or too few frames remain.
  """
  if video.kind == "file":
    native, fps, stated = file_frames(video.path)
    frames, count = frame_format.frames(native)
    if not count:
      raise UnusableVideo(video.path, "holds no frames")
    if count < TRUNCATION_FRACTION * stated - TRUNCATION_SLACK_FRAMES:
      raise UnusableVideo(video.path, f"truncated or corrupt: decoded {count} frames, the container states about "
                          f"{round(stated)}")
    frame_index, stems = np.arange(count, dtype=np.int64), None
  else:
    numbered = frame_files(video.path)
    if not numbered:
      raise UnusableVideo(video.path, f"holds no frames ({'/'.join(FRAME_EXTENSIONS)} files)")
    frames, count = frame_format.frames(_folder_frames(numbered))
    frame_index = np.asarray([number for number, _ in numbered], np.int64)
    stems = tuple(os.path.splitext(os.path.basename(path))[0] for _, path in numbered)
    fps = 0.0
  skip = frame_format.skip_frames
  if count < skip + min_frames:
    raise UnusableVideo(video.path, f"{count} frames, fewer than one clip (skip_frames {skip} + frames_per_clip "
                        f"{min_frames})")
  return DecodedVideo(frames, frame_index[skip:], fps, stems[skip:] if stems is not None else None)


def _decode_text(path, data):
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as error:
    raise UnusableVideo(path, f"not UTF-8 text (byte {error.start})") from None


def read_descriptions(path):
  """A description file's non-empty lines, stripped; the first is the video's main description."""
  with open(path, "rb") as f:
    lines = [line.strip() for line in _decode_text(path, f.read()).splitlines()]
  descriptions = [line for line in lines if line]
  if not descriptions:
    raise UnusableVideo(path, "the description file is empty")
  return descriptions


def description_file(video):
  """Where a video's own description lives: text_descriptions.txt in a frame folder, <stem>.txt next to a file."""
  if video.kind == "frames":
    return os.path.join(video.path, FOLDER_DESCRIPTION_FILE)
  return os.path.splitext(video.path)[0] + ".txt"


def video_descriptions(video, table):
  """The video's descriptions from the table ({name: [text, ...]}) if it is there, else from its own file."""
  if video.name in table:
    return table[video.name]
  path = description_file(video)
  if not os.path.isfile(path):
    raise UnusableVideo(video.path, f"no description (expected {path} or an entry in --descriptions)")
  return read_descriptions(path)


def read_description_table(path):
  """Reads --descriptions: a CSV with columns name,description (several rows per name allowed) or a JSON object
  {name: text or [text, ...]}. -> {name: [text, ...]}."""
  try:
    with open(path, encoding="utf-8-sig") as f:
      content = f.read()
  except (OSError, UnicodeDecodeError) as error:
    raise UserError(f"{path}: cannot read the descriptions file ({error})") from None
  table = {}
  if path.lower().endswith(".json"):
    try:
      entries = json.loads(content)
    except json.JSONDecodeError as error:
      raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(entries, dict):
      raise UserError(f"{path}: expected a JSON object {{name: text or [text, ...]}}")
    for name, texts in entries.items():
      texts = [texts] if isinstance(texts, str) else texts
      if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise UserError(f"{path}: entry {name!r} must be a string or a list of strings")
      table[name] = [text.strip() for text in texts if text.strip()]
  elif path.lower().endswith(".csv"):
    rows = csv.DictReader(content.splitlines())
    if rows.fieldnames is None or not {"name", "description"} <= set(rows.fieldnames):
      raise UserError(f"{path}: the CSV header must hold the columns name,description; found {rows.fieldnames}")
    for row in rows:
      text = (row["description"] or "").strip()
      if text:
        table.setdefault(row["name"], []).append(text)
  else:
    raise UserError(f"{path}: the descriptions file must end in .csv or .json")
  return {name: texts for name, texts in table.items() if texts}


def read_split_list(path):
  """A split list: one video name per line (blank lines ignored, duplicates dropped), as the official lists."""
  try:
    with open(path, encoding="utf-8") as f:
      names = [line.strip() for line in f]
  except (OSError, UnicodeDecodeError) as error:
    raise UserError(f"{path}: cannot read the split list ({error})") from None
  return sorted({name for name in names if name})


def hash_split(names, test_fraction):
  """Deterministic held-out split: the max(1, round(fraction * n)) names of lowest sha256 -> (train, test)."""
  if len(names) < 2:
    raise UserError(f"{len(names)} video name(s): at least 2 are needed to hold one out for testing")
  num_test = min(len(names) - 1, max(1, round(test_fraction * len(names))))
  by_hash = sorted(names, key=lambda name: hashlib.sha256(name.encode("utf-8")).hexdigest())
  test = set(by_hash[:num_test])
  return sorted(set(names) - test), sorted(test)
