"""The effective config of a run, checked before anything is built or compiled.

`resolve` fills in each frozen network's architecture from its ported folder (models/frozen.py) and checks every
field against the others; each error is one line naming the fields involved.
"""

import math
import os

import ml_collections

from vidstyleode_jax import inference
from vidstyleode_jax import schedules
from vidstyleode_jax import text
from vidstyleode_jax.data import synthetic
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import dynamics
from vidstyleode_jax.models import frozen
from vidstyleode_jax.models import mapper as mapper_lib
from vidstyleode_jax.models import modulation

MASK_MODES = ("static", "interpolate", "extrapolate")
DATA_KINDS = ("synthetic", "prepared")
PERCEPTUAL_LOSSES = ("dino", "vgg")
# Fields added after the first runs were saved, with the value those runs had: a config.json without them still
# loads as the model it trained (docs/model.md §21).
LATER_FIELDS = {
    "dynamics.kind": "ode",
    "modulation.self_attention": True,
    "modulation.fusion": "cross_attention",
    "model.content": "mean",
    "mapper.residual": True,
    "mapper.output_activation": "leaky_relu",
    "data.clip_span": 0,
    "modulation.init_std": modulation.PAPER_INIT_STD,
    "loss.perceptual": "dino",
    "clip.remat": False,
    "dino.remat": False,
    "train.max_consecutive_skips": 20,  # runs before the non-finite guard never stopped; the paper configs' value
}
SYNTHETIC_LATER_FIELDS = {"data.motion": "sinusoid"}


def _require(condition, message):
  if not condition:
    raise UserError(message)


def resolve(config, need_dataset=True, architectures=None):
  """The run's effective config: a checked copy of `config` with the frozen networks' architectures filled in.

  Args:
    config: a run config (configs/*.py, or a run's config.json).
    need_dataset: whether config.data.dataset_dir must exist (training does; the applications do not).
    architectures: see frozen.resolve_architectures.

  Raises:
    UserError: on the first problem: missing ported folders or dataset (all named at once), a ported folder that
      disagrees with the config, or fields that do not fit each other.
  """
  config = with_later_fields(config)
  _require(
      config.loss.perceptual != "vgg" or "vgg" in config,
      "loss.perceptual='vgg' needs a vgg section: vgg.checkpoint, a folder written by `python -m port_weights vgg` "
      "(or empty, with vgg.widths, for random weights as in configs/ablations.py)",
  )
  missing = missing_paths(config, need_dataset)
  _require(
      not missing,
      "missing: " + "; ".join(missing) + ". Port the PyTorch checkpoints with `python -m port_weights KIND SRC DST`"
      " and prepare the videos with `python -m vidstyleode_jax.data.prepare` (README, \"The paper's path\"),"
      " then point these fields at them",
  )
  if not text.builds_vocabulary(config):
    text.check_folder(text.tokenizer_folder(config, workdir=None))
  config = frozen.resolve_architectures(config, architectures)
  _check_fields(config)
  return config


def with_later_fields(config):
  """A copy of `config` with every LATER_FIELDS field it lacks set to the value runs had before that field."""
  config = config.copy_and_resolve_references()
  config.unlock()
  defaults = dict(LATER_FIELDS, **(SYNTHETIC_LATER_FIELDS if config.data.kind == "synthetic" else {}))
  for field, value in defaults.items():
    section, key = field.split(".")
    if section not in config:
      config[section] = ml_collections.ConfigDict()
    if key not in config[section]:
      config[section][key] = value
  return config


def _check_fields(config):
  data, gen, clip, dino = config.data, config.generator, config.clip, config.dino
  dyn, mod, mapper, loss = config.dynamics, config.modulation, config.mapper, config.loss

  _require(
      2 <= data.frames_decoded <= data.frames_per_clip,
      f"data.frames_decoded={data.frames_decoded} must be in [2, data.frames_per_clip={data.frames_per_clip}]",
  )
  _require(data.video_length > 0, f"data.video_length={data.video_length} must be positive")
  _require(data.kind in DATA_KINDS, f"data.kind={data.kind!r} must be one of {DATA_KINDS}")
  if data.kind == "prepared":
    for field in ("dataset_dir", "train_split", "eval_split"):
      _require(data.get(field), f"data.{field} must name a prepared dataset's folder or split for data.kind='prepared'")
  _require(data.skip_frames >= 0, f"data.skip_frames={data.skip_frames} must be >= 0")
  _require(isinstance(data.clip_span, int) and (data.clip_span == 0 or data.clip_span >= data.frames_per_clip),
           f"data.clip_span={data.clip_span!r} must be 0 (clips over the whole video) or an int >= "
           f"data.frames_per_clip={data.frames_per_clip}")
  _require(data.read_threads >= 1, f"data.read_threads={data.read_threads} must be >= 1")
  _require(data.prefetch >= 1, f"data.prefetch={data.prefetch} must be >= 1")
  _require(data.num_eval_videos >= 1, f"data.num_eval_videos={data.num_eval_videos} must be >= 1")
  if data.kind == "synthetic":
    _require(data.motion in synthetic.MOTION_KINDS, f"data.motion={data.motion!r} must be one of "
             f"{synthetic.MOTION_KINDS}")
    _require(data.clip_span <= data.frames_per_video, f"data.clip_span={data.clip_span} must be at most "
             f"data.frames_per_video={data.frames_per_video}: a clip cannot span more frames than a demo video has")

  factor = 2**dyn.num_downsamples
  _require(
      dyn.height % factor == 0 and dyn.width % factor == 0,
      f"dynamics.height x width = {dyn.height}x{dyn.width} is not divisible by 2**dynamics.num_downsamples={factor}",
  )
  grid_cells = (dyn.height // factor) * (dyn.width // factor)
  _require(
      mod.num_dynamics_tokens == grid_cells,
      f"modulation.num_dynamics_tokens={mod.num_dynamics_tokens} does not match the dynamics encoder grid "
      f"(dynamics.height/2**num_downsamples x dynamics.width/2**num_downsamples = {grid_cells} cells)",
  )
  _require(dyn.mask_mode in MASK_MODES, f"dynamics.mask_mode={dyn.mask_mode!r} must be one of {MASK_MODES}")
  _require(dyn.kind in dynamics.KINDS, f"dynamics.kind={dyn.kind!r} must be one of {dynamics.KINDS}")
  _require(mod.fusion in modulation.FUSIONS, f"modulation.fusion={mod.fusion!r} must be one of {modulation.FUSIONS}")
  _require(isinstance(mod.self_attention, bool),
           f"modulation.self_attention={mod.self_attention!r} must be true or false")
  _require(isinstance(mapper.residual, bool), f"mapper.residual={mapper.residual!r} must be true or false")
  _require(mapper.output_activation in mapper_lib.OUTPUT_ACTIVATIONS,
           f"mapper.output_activation={mapper.output_activation!r} must be one of {mapper_lib.OUTPUT_ACTIVATIONS}")
  _require(isinstance(mod.init_std, float) and mod.init_std > 0,
           f"modulation.init_std={mod.init_std!r} must be a positive float")
  _require(config.model.content in inference.CONTENT_CODES,
           f"model.content={config.model.content!r} must be one of {inference.CONTENT_CODES}")
  _require(loss.perceptual in PERCEPTUAL_LOSSES, f"loss.perceptual={loss.perceptual!r} must be one of "
           f"{PERCEPTUAL_LOSSES}")
  if dyn.mask_mode != "static":
    _require(
        0 < dyn.mask_num_hidden <= data.frames_per_clip - 2,
        f"dynamics.mask_num_hidden={dyn.mask_num_hidden} must be in [1, data.frames_per_clip - 2]"
        f" for mask_mode={dyn.mask_mode!r}",
    )

  _require(
      mod.width % mod.num_heads == 0,
      f"modulation.width={mod.width} is not divisible by modulation.num_heads={mod.num_heads}",
  )
  _require(
      clip.embed_dim == mod.width,
      f"clip.embed_dim={clip.embed_dim} must equal modulation.width={mod.width} (the style token is a CLIP embedding)",
  )
  n_latent = 2 * int(math.log2(gen.resolution)) - 2
  _require(
      sum(mapper.group_sizes) == n_latent,
      f"mapper.group_sizes={tuple(mapper.group_sizes)} must sum to the generator's {n_latent} W+ layers"
      f" (generator.resolution={gen.resolution})",
  )
  _require(
      len(mapper.group_sizes) == 3 and len(mapper.group_depths) == 3,
      "mapper.group_sizes and mapper.group_depths must each have 3 entries (coarse, medium, fine)",
  )
  _require(all(depth >= 1 for depth in mapper.group_depths),
           f"mapper.group_depths={tuple(mapper.group_depths)} must be at least 1 in every group")
  for tower, width, heads in (("vision", clip.vision_width, clip.vision_heads), ("text", clip.text_width,
                                                                                clip.text_heads)):
    _require(width % heads == 0, f"clip.{tower}_width={width} is not divisible by clip.{tower}_heads={heads}")
  _require(dino.width % dino.num_heads == 0, f"dino.width={dino.width} is not divisible by dino.num_heads")
  _require(0 <= dino.key_layer < dino.depth, f"dino.key_layer={dino.key_layer} must be < dino.depth={dino.depth}")
  _require(0 <= dino.cls_layer < dino.depth, f"dino.cls_layer={dino.cls_layer} must be < dino.depth={dino.depth}")
  _require(
      clip.image_size % clip.vision_patch_size == 0,
      f"clip.image_size={clip.image_size} is not divisible by clip.vision_patch_size={clip.vision_patch_size}",
  )
  _require(
      config.frozen_compute_dtype in ("float32", "bfloat16"),
      f"frozen_compute_dtype={config.frozen_compute_dtype!r} must be 'float32' or 'bfloat16'",
  )
  _require(loss.clip_frames >= 2, f"loss.clip_frames={loss.clip_frames} must be at least 2")
  skips = config.train.max_consecutive_skips
  _require(skips >= 1, f"train.max_consecutive_skips={skips} must be at least 1")
  for name in ("rec", "latent", "vgg", "directional", "consistency"):
    schedules.validate(f"loss.{name}", loss[name])


def missing_paths(config, need_dataset=True):
  """Config fields naming a ported folder or dataset directory that does not exist, as 'field=path' strings."""
  fields = ["generator.checkpoint", "clip.checkpoint", "clip.tokenizer", "dino.checkpoint"]
  if "vgg" in frozen.network_names(config):
    fields.append("vgg.checkpoint")
  if need_dataset and config.data.kind == "prepared":
    fields.append("data.dataset_dir")
  missing = []
  for field in fields:
    section, key = field.split(".")
    path = config[section][key]
    if path and not os.path.isdir(path):
      missing.append(f"{field}={path}")
  return missing
