r"""Real videos and their descriptions -> a prepared dataset (data/prepared.py) that training reads.

  python -m vidstyleode_jax.data.prepare --config=configs/ravdess.py --videos=VIDEOS_DIR --out=data/ravdess \
      --split train=action_train.txt --split test=action_test.txt       # pSp from config.psp.checkpoint
  python -m vidstyleode_jax.data.prepare --config=configs/fashion.py --videos=IMG_ROOT --out=data/fashion \
      --import_inversions=INVERSION_ROOT --split train=fashion_train_videos.txt --split test=fashion_test_videos.txt

Each video (a file or a folder of frames, data/inputs.py) is decoded, its first config.data.skip_frames frames are
dropped, every other frame is center-cropped to the generator's aspect ratio and resized to config.data.height x
width (antialiased bilinear; data/inputs.FrameFormat, which the applications use too), and every kept frame
is inverted to W+ by the ported pSp encoder (or, with --import_inversions, read from the official .pt files).

The work is resumable: each finished video is written atomically to OUT/work/<name>.npz and a rerun skips it. The
dataset is assembled from these files at the end (tfds writes into `incomplete.*` and renames), then OUT/work is
deleted unless --keep_work. Unusable inputs are skipped and listed with their reason in OUT/report.tsv (--strict
stops at the first one instead). The same inputs give the same arrays whether prepared in one run or resumed.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time

from absl import flags
from ml_collections import config_flags
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from vidstyleode_jax import errors
from vidstyleode_jax import files
from vidstyleode_jax import host_memory
from vidstyleode_jax import inversion
from vidstyleode_jax import ported
from vidstyleode_jax import text
from vidstyleode_jax.data import inputs
from vidstyleode_jax.data import official_import
from vidstyleode_jax.data import prepared
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import frozen

WORK_DIR = "work"
SETTINGS_FILE = "settings.json"
REPORT_FILE = "report.tsv"
WORK_SUFFIX = ".npz"


def define_flags(argv):
  """The command's flags, in a FlagValues of their own (so that main() can be called more than once)."""
  flag_values = flags.FlagValues()
  define = lambda kind, name, default, help_string: kind(name, default, help_string, flag_values=flag_values)
  config_flags.DEFINE_config_file(
      "config", None, "Config file (configs/fashion.py, configs/ravdess.py, ...); its data.height/width, "
      "data.skip_frames, data.frames_per_clip, the ported generator and CLIP (the W+ shape, the aspect ratio, the "
      "tokenizer), psp.checkpoint and data.train_split/eval_split are used. Fields can be overridden, e.g. "
      "--config.data.skip_frames=0.",
      flag_values=flag_values, lock_config=True, sys_argv=list(argv))
  define(flags.DEFINE_string, "videos", None,
         "Folder of video files (" + "/".join(inputs.VIDEO_EXTENSIONS) + ") and/or sub-folders of frame images "
         "(" + "/".join(inputs.FRAME_EXTENSIONS) + ", ordered by the number in the file name). A video's name is "
         "its file stem or folder name.")
  define(flags.DEFINE_string, "out", None, "Output folder (default: config.data.dataset_dir).")
  define(flags.DEFINE_string, "psp", None,
         "Ported pSp encoder folder (`python -m port_weights psp SRC DST`); default: config.psp.checkpoint.")
  define(flags.DEFINE_string, "import_inversions", None,
         "Instead of inverting: the official inversion_root, ROOT/<video>/<frame-stem>.pt per frame ([1, L, S] or "
         "[L, S] tensors; needs torch). --videos is then the official img_root of frame folders.")
  define(flags.DEFINE_string, "descriptions", None,
         "A CSV (columns name,description; several rows per name allowed) or JSON ({name: text or [text, ...]}) "
         "of descriptions. It takes precedence; videos not in it use their own file: text_descriptions.txt in a "
         "frame folder, <stem>.txt next to a video file (non-empty lines; the first is the main description).")
  define(flags.DEFINE_multi_string, "split", [],
         "NAME=FILE, repeatable: a split and its list of video names, one per line (as the official "
         "fashion_train_videos.txt). Without any: every usable video goes to config.data.train_split (default "
         "'train') except a deterministic held-out config.data.eval_split ('test') of --test_fraction of them, "
         "chosen by the sha256 of the names.")
  define(flags.DEFINE_float, "test_fraction", 0.1,
         "Without --split: the fraction of videos held out for testing (at least 1 video).")
  define(flags.DEFINE_integer, "batch_size", 16, "Frames per encoder call (the last batch of a video is padded).")
  define(flags.DEFINE_bool, "strict", False, "Stop with an error at the first unusable input instead of skipping it.")
  define(flags.DEFINE_bool, "overwrite", False, "Delete an existing dataset in --out (and its work files) and rebuild.")
  define(flags.DEFINE_bool, "keep_work", False, "Keep OUT/work (the per-video arrays) after the dataset is written.")
  define(flags.DEFINE_bool, "progress", True, "Show a progress bar.")
  return flag_values


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything that determines a video's prepared arrays; OUT/work is only reused under the same settings."""

  frame_format: inputs.FrameFormat
  frames_per_clip: int
  wplus_shape: tuple[int, int]
  encoder: str  # the pSp folder and its source hash, or the imported inversion root
  descriptions: str  # the descriptions table and its hash, or ""


def _file_sha256(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _encoder_identity(psp_dir):
  hash_file = os.path.join(psp_dir, "source.sha256")
  source = "no source.sha256"
  if os.path.isfile(hash_file):
    with open(hash_file) as f:
      source = f.read().strip()
  return f"psp {os.path.abspath(psp_dir)} ({source})"


def load_inverter(psp_dir, generator, batch_size):
  """The ported pSp encoder for the config's `generator` module.

  Raises UserError if the folder is missing or the encoder writes W+ of another shape than the generator reads;
  warns when the pSp's own decoder has another output size than the generator (its codes were fitted to another
  generator, which may still be what the user wants).
  """
  try:
    inverter = inversion.Inverter.from_ported(psp_dir, batch_size)
  except UserError as error:
    raise UserError(f"--psp: {error}") from None
  if (inverter.n_styles, inverter.style_dim) != (generator.n_latent, generator.style_dim):
    raise UserError(
        f"{psp_dir}: the pSp encoder writes W+ of shape [{inverter.n_styles}, {inverter.style_dim}] (n_styles, "
        f"style_dim) but the config's generator reads [{generator.n_latent}, {generator.style_dim}] (2 * log2("
        "generator.resolution) - 2, generator.style_dim)")
  decoder = ported.build_module(ported.read_architecture(psp_dir, "psp")["decoder"])
  decoder_size, generator_size = [(g.resolution, g.resolution // g.aspect) for g in (decoder, generator)]
  if decoder_size != generator_size:
    print(f"prepare: warning: the pSp in {psp_dir} was trained with a {decoder_size[0]}x{decoder_size[1]} decoder, "
          f"but the config's generator renders {generator_size[0]}x{generator_size[1]}: its W+ codes may not suit "
          "this generator", file=sys.stderr)
  return inverter


def save_work(path, example):
  """Writes one video's arrays to path atomically."""
  with files.atomic_file(path, binary=True) as f:
    np.savez(f, frames=example["frames"], wplus=example["wplus"], frame_index=example["frame_index"],
             fps=np.float32(example["fps"]), descriptions=np.asarray(example["descriptions"], dtype=str))


def load_work(path, name):
  """One finished video's example dict (the fields of data/prepared.py)."""
  with np.load(path, allow_pickle=False) as data:
    return dict(name=name, frames=data["frames"], wplus=data["wplus"], frame_index=data["frame_index"],
                descriptions=[str(line) for line in data["descriptions"]], fps=np.float32(data["fps"]))


def prepare_video(video, settings, description_table, count_tokens, context_length, encode):
  """Decodes, describes and inverts one video -> example dict; raises inputs.UnusableVideo.

  count_tokens(text) -> CLIP tokens of a description (start and end included); a description longer than
  context_length makes the video unusable, since training could not tokenize it.
  """
  descriptions = inputs.video_descriptions(video, description_table)
  for number, description in enumerate(descriptions, start=1):
    tokens = count_tokens(description)
    if tokens > context_length:
      raise inputs.UnusableVideo(video.path, f"description {number} ({description[:40]!r}...) has {tokens} CLIP "
                                 f"tokens, more than clip.context_length={context_length} (start and end included)")
  decoded = inputs.decode(video, settings.frame_format, settings.frames_per_clip)
  wplus = encode(video, decoded)
  return dict(name=video.name, frames=decoded.frames, wplus=wplus, frame_index=decoded.frame_index,
              descriptions=descriptions, fps=decoded.fps)


def _open_work_dir(work_dir, settings):
  """Creates OUT/work, or checks that an existing one was made with the same settings; removes stale temp files."""
  settings_path = os.path.join(work_dir, SETTINGS_FILE)
  current = json.loads(json.dumps(dataclasses.asdict(settings)))
  if os.path.isfile(settings_path):
    with open(settings_path) as f:
      previous = json.load(f)
    changed = {key: (previous.get(key), value) for key, value in current.items() if previous.get(key) != value}
    if changed:
      details = "; ".join(f"{key}: {old} -> {new}" for key, (old, new) in changed.items())
      raise UserError(f"{work_dir}: holds videos prepared with other settings ({details}); rerun with "
                         "--overwrite to start over")
  else:
    os.makedirs(work_dir, exist_ok=True)
    with files.atomic_file(settings_path) as f:
      json.dump(current, f, indent=2)
  files.remove_stale_temporaries(work_dir)  # left by a killed run


def _parse_split_flags(split_flags):
  """['NAME=FILE', ...] -> {NAME: sorted names of its list}."""
  lists = {}
  for value in split_flags:
    split, sep, path = value.partition("=")
    if not sep or not split or not path:
      raise UserError(f"--split {value!r}: expected NAME=FILE, e.g. --split train=fashion_train_videos.txt")
    if split in lists:
      raise UserError(f"--split: split {split!r} is given twice")
    lists[split] = inputs.read_split_list(path)
  return lists


def _token_counter(config):
  """text -> CLIP tokens under the tokenizer training will use (a built vocabulary has one token per word)."""
  if text.builds_vocabulary(config):
    return text.built_token_count
  tokenizer = text.ClipTokenizer(text.tokenizer_folder(config, workdir=None), config.clip.context_length)
  return lambda description: len(tokenizer.token_ids(description))


def _encoder(options, config, generator):
  """-> (identity for Settings, encode(video, decoded) -> W+ [time, n_latent, style_dim]): pSp or imported."""
  wplus_shape = (generator.n_latent, generator.style_dim)
  if options.import_inversions:
    official_import.check_torch()
    if not os.path.isdir(options.import_inversions):
      raise UserError(f"--import_inversions={options.import_inversions}: no such folder")
    encode = lambda video, decoded: official_import.read_inversions(options.import_inversions, video, decoded.stems,
                                                                   wplus_shape)
    return f"imported {os.path.abspath(options.import_inversions)}", encode
  psp_dir = options.psp or (config.psp.checkpoint if "psp" in config else None)
  if not psp_dir:
    raise UserError("no pSp encoder: pass --psp=DIR (a folder written by `python -m port_weights psp`) or "
                       "--import_inversions=ROOT")
  inverter = load_inverter(psp_dir, generator, options.batch_size)
  return _encoder_identity(psp_dir), lambda video, decoded: inverter(decoded.frames)


def _select_videos(found, split_lists, videos_dir, skip):
  """The inputs to prepare: unique names, and only listed ones when there are split lists; the rest go to skip()."""
  by_name = {}
  for video in found:
    by_name.setdefault(video.name, []).append(video)
  listed = set().union(*split_lists.values()) if split_lists else None
  videos = []
  for name, same_name in by_name.items():
    if len(same_name) > 1:
      for video in same_name:
        skip(video.path, f"the name {name!r} is shared by " + ", ".join(v.path for v in same_name))
    elif listed is not None and name not in listed:
      skip(same_name[0].path, "not in any --split list", unusable=False)
    else:
      videos.append(same_name[0])
  for split, names in split_lists.items():
    for name in names:
      if name not in by_name:
        skip(name, f"listed in --split {split} but not found in {videos_dir}")
  return videos


def _write_report(path, skipped):
  """OUT/report.tsv: one row per input that is not in the dataset, with the reason."""
  clean = lambda text: " ".join(str(text).split())
  rows = ["input\treason"] + [f"{clean(source)}\t{clean(reason)}" for source, reason in skipped]
  with files.atomic_file(path) as f:
    f.write("\n".join(rows) + "\n")


def _examples(work_dir, names, counts):
  for name in names:
    example = load_work(os.path.join(work_dir, name + WORK_SUFFIX), name)
    counts["frames"] += len(example["frames"])
    yield example


def run(options):
  """Prepares the dataset for parsed flags; returns the exit status. Raises UserError / UserError."""
  if options["config"].present == 0:
    raise UserError("--config is required, e.g. --config=configs/fashion.py")
  try:
    config = options.config
    data = config.data
  except Exception as error:  # config_flags stands in a placeholder that raises whatever loading the file raised
    raise UserError(f"--config: {' '.join(str(error.__cause__ or error).split())}") from None
  if not options.videos:
    raise UserError("--videos is required: a folder of video files and/or frame folders")
  if not 0 < options.test_fraction < 1:
    raise UserError(f"--test_fraction={options.test_fraction}: must be between 0 and 1")
  if options.batch_size < 1:
    raise UserError(f"--batch_size={options.batch_size}: must be at least 1")
  out = options.out or data.get("dataset_dir")
  if not out:
    raise UserError("--out is required (the config has no data.dataset_dir)")
  dataset_path = prepared.builder_dir(out)
  work_dir = os.path.join(out, WORK_DIR)
  report_path = os.path.join(out, REPORT_FILE)
  if os.path.isdir(dataset_path):
    if not options.overwrite:
      print(f"{dataset_path} already holds a prepared dataset; nothing to do (pass --overwrite to rebuild it)")
      return 0
  if options.overwrite:
    for path in (os.path.dirname(dataset_path), work_dir):
      shutil.rmtree(path, ignore_errors=True)

  config = frozen.resolve_architectures(config, names=("generator", "clip"))
  generator = frozen.network("generator", config)
  wplus_shape = (generator.n_latent, generator.style_dim)
  count_tokens = _token_counter(config)
  description_table = inputs.read_description_table(options.descriptions) if options.descriptions else {}
  split_lists = _parse_split_flags(options.split)
  encoder, encode = _encoder(options, config, generator)
  frame_format = inputs.FrameFormat.of(config)
  settings = Settings(
      frame_format=frame_format, frames_per_clip=data.frames_per_clip, wplus_shape=wplus_shape, encoder=encoder,
      descriptions=f"{os.path.abspath(options.descriptions)} ({_file_sha256(options.descriptions)})"
      if options.descriptions else "")

  skipped = []

  def skip(source, reason, unusable=True):
    if unusable and options.strict:
      raise UserError(f"{source}: {reason} (--strict)")
    skipped.append((source, reason))

  found = inputs.find_inputs(options.videos, exclude=[path for path in (out, options.import_inversions) if path])
  videos = _select_videos(found, split_lists, options.videos, skip)
  _open_work_dir(work_dir, settings)
  finished, prepared_now = set(), 0
  start = time.perf_counter()
  for video in tqdm.tqdm(videos, desc="preparing", unit="video", disable=not options.progress):
    path = os.path.join(work_dir, video.name + WORK_SUFFIX)
    if not os.path.isfile(path):
      try:
        save_work(path, prepare_video(video, settings, description_table, count_tokens, config.clip.context_length,
                                      encode))
      except inputs.UnusableVideo as error:
        skip(error.path, error.reason)
        continue
      prepared_now += 1
    finished.add(video.name)
  elapsed = time.perf_counter() - start

  _write_report(report_path, skipped)
  if split_lists:
    splits = {split: [name for name in names if name in finished] for split, names in split_lists.items()}
  else:
    if len(finished) < 2:
      raise UserError(f"{len(finished)} usable video(s) in {options.videos}, at least 2 are needed (one held out for "
                      f"testing); {report_path} lists why the others were skipped")
    train, test = inputs.hash_split(sorted(finished), options.test_fraction)
    splits = {data.get("train_split", "train"): train, data.get("eval_split", "test"): test}
  empty = [split for split, names in splits.items() if not names]
  if empty:
    raise UserError(f"split(s) {empty} would hold no usable video; see {report_path}")

  counts = {"frames": 0}
  tfds.disable_progress_bar()
  prepared.write(out, {split: _examples(work_dir, names, counts) for split, names in splits.items()},
                 frame_size=(frame_format.height, frame_format.width), wplus_shape=wplus_shape)
  if not options.keep_work:
    shutil.rmtree(work_dir)
  kept = ", ".join(f"{split} {len(names)}" for split, names in splits.items())
  print(f"{dataset_path}: videos per split: {kept}; {counts['frames']} frames of {frame_format.height}x"
        f"{frame_format.width}; {len(skipped)} input(s) skipped (listed in {report_path}); prepared {prepared_now} "
        f"video(s) in this run in {elapsed:.1f} s ({prepared_now / max(elapsed, 1e-9):.2f} videos/s)")
  return 0


@errors.exits_on_user_error("prepare")
def main(argv):
  """Runs the command; returns the exit status. User errors print one line to stderr and return 1."""
  host_memory.keep_freed_memory()
  argv = list(argv)
  flag_values = define_flags(argv)
  if any(arg in ("-h", "--help", "--helpshort", "--helpfull") for arg in argv[1:]):
    print(__doc__)
    print(flag_values.get_help())
    return 0
  errors.parse_flags("prepare", argv, flag_values)
  return run(flag_values)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
