"""Kind `stylegan2`: a rosinality StyleGAN2 `.pt` (docs/weight_formats.md §1) -> models.stylegan2.Generator.

The file is a `torch.save` dict holding `g_ema` (and optionally `latent_avg`, `g`, `d`, `args`, ...). It is read with
`weights_only=True`; rosinality training snapshots keep their options as an `argparse.Namespace`, which is
allow-listed. The architecture is inferred from the generator's keys (§1.2): resolution, aspect (the 4x2 input of
StyleGAN-Human, §1.6), n_mlp, style_dim, channel_multiplier and, for small models, channel_divisor.
"""

import argparse
import pickle
import re
import warnings
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch

from port_weights import rosinality
from port_weights.output import Ported, check_variables
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models.stylegan2 import Generator

DESCRIPTION = (
    "rosinality/stylegan2-pytorch checkpoint (.pt: torch.save dict with 'g_ema', optional 'latent_avg') -> "
    "vidstyleode_jax.models.stylegan2.Generator; also the StyleGAN-Human 1024x512 rosinality conversion."
)
MODULE = "vidstyleode_jax.models.stylegan2.Generator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      "--generator", choices=("g_ema", "g"), default="g_ema",
      help="which generator of the file to port (default: the EMA weights, g_ema)",
  )
  parser.add_argument(
      "--lr-mlp", type=float, default=0.01,
      help="learning-rate multiplier of the mapping layers the checkpoint was trained with (not stored; default 0.01)",
  )


def load_torch_file(src: str) -> Any:
  """torch.load(src) on CPU with weights_only=True, argparse.Namespace allowed; UserError on any failure."""
  try:
    with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
      warnings.simplefilter("ignore", UserWarning)
      return torch.load(src, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as error:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    reason = next((line for line in lines if "GLOBAL" in line or "nsupported" in line), lines[0])
    raise UserError(
        f"{src}: refused to unpickle: the file holds objects outside the weights-only allow-list ({reason}); "
        "nothing in the file was executed"
    ) from None
  except (RuntimeError, EOFError, OSError, ValueError) as error:
    raise UserError(f"{src}: not a readable torch.save file (truncated or corrupt?): {error}") from None


def _shape(state_dict: Mapping[str, Any], key: str, src: str) -> tuple[int, ...]:
  if key not in state_dict:
    raise UserError(f"{src}: missing key {key!r}, needed to infer the architecture")
  return tuple(state_dict[key].shape)


def infer_fields(state_dict: Mapping[str, Any], src: str) -> dict:
  """Generator fields from rosinality keys (docs/weight_formats.md §1.2); the channel divisor is 512 // C(4).

  Raises:
    UserError: naming the key whose presence or shape does not fit a rosinality generator.
  """
  n_mlp = len([key for key in state_dict if re.fullmatch(r"style\.\d+\.weight", key)])
  style_dim = _shape(state_dict, "conv1.conv.modulation.weight", src)[-1]
  input_shape = _shape(state_dict, "input.input", src)
  if len(input_shape) != 4 or input_shape[2] != 4 or input_shape[3] not in (1, 2, 4) or 512 % input_shape[1]:
    raise UserError(f"{src}: key 'input.input' has shape {list(input_shape)}, expected [1, C, 4, 4 / aspect] "
                    "with C dividing 512 and aspect 1, 2 or 4")
  channel_divisor = 512 // input_shape[1]
  n_blocks = len({match[1] for key in state_dict if (match := re.match(r"to_rgbs\.(\d+)\.", key))})
  resolution = 2 ** (n_blocks + 2)
  channel_multiplier = 2
  if resolution >= 64:
    key = "convs.6.conv.weight"  # the first block at 64 px: C(64) = 256 * channel_multiplier / channel_divisor
    channels_64 = _shape(state_dict, key, src)[1] * channel_divisor
    if channels_64 % 256:
      raise UserError(f"{src}: key {key!r} has {channels_64 // channel_divisor} output channels, expected a "
                      f"multiple of {256 // channel_divisor} (256 * channel_multiplier / {channel_divisor})")
    channel_multiplier = channels_64 // 256
  return dict(resolution=resolution, aspect=4 // input_shape[3], style_dim=style_dim, n_mlp=n_mlp,
              channel_multiplier=channel_multiplier, channel_divisor=channel_divisor)


def expected_variables(generator: Generator) -> dict:
  """Shapes of the generator's "params" and "noise" collections, without allocating them."""
  w_plus = jax.ShapeDtypeStruct((1, generator.n_latent, generator.style_dim), jnp.float32)
  return jax.eval_shape(generator.init, jax.random.key(0), w_plus)


def generator_variables(state_dict: Mapping[str, Any], fields: dict, src: str, latent_avg: Any | None = None,
                        source_of: Mapping[str, tuple[str, tuple]] | None = None,
                        unexpected_keys: Sequence[str] = ()) -> dict:
  """Converts and checks a rosinality generator state dict against `Generator(**fields)`.

  Args:
    state_dict: rosinality key -> tensor or array.
    fields: Generator constructor fields.
    src: the source file, named in errors.
    latent_avg: optional [style_dim] mean W, stored as the "latent_avg" collection {"w": [style_dim]}.
    source_of: optional rosinality key -> (key, shape) in the file, when the file uses another layout.
    unexpected_keys: keys of the file that were not mapped onto rosinality keys, reported as unexpected.

  Returns:
    {"params", "noise"[, "latent_avg"]}: nested dicts of float32 numpy arrays.

  Raises:
    UserError: on unexpected, missing or mis-shaped keys, or stored FIR kernels that differ from the recomputed ones.
  """
  try:
    trees, sources, unknown = rosinality.map_generator(state_dict)
  except ValueError as error:
    raise UserError(f"{src}: {error}") from None
  if source_of is not None:
    sources = {path: source_of.get(key, (key, shape)) for path, (key, shape) in sources.items()}
  check_variables(trees, expected_variables(Generator(**fields)), src, sources, [*unexpected_keys, *unknown])
  if latent_avg is not None:
    latent_avg = np.asarray(latent_avg, dtype=np.float32)
    if latent_avg.shape != (fields["style_dim"],):
      raise UserError(f"{src}: latent_avg has shape {list(latent_avg.shape)}, expected [{fields['style_dim']}]")
    trees["latent_avg"] = {"w": latent_avg}
  return trees


def port(src: str, args: argparse.Namespace) -> Ported:
  checkpoint = load_torch_file(src)
  if not isinstance(checkpoint, Mapping) or args.generator not in checkpoint:
    found = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
    raise UserError(f"{src}: expected a dict with the generator entry {args.generator!r}, found {found}")
  if not isinstance(checkpoint[args.generator], Mapping):
    raise UserError(f"{src}: entry {args.generator!r} is a {type(checkpoint[args.generator]).__name__}, "
                    "expected a state dict")
  state_dict = {key: value.float().numpy() if isinstance(value, torch.Tensor) else value
                for key, value in checkpoint[args.generator].items()}
  fields = dict(infer_fields(state_dict, src), lr_mlp=args.lr_mlp)
  latent_avg = checkpoint.get("latent_avg")
  if isinstance(latent_avg, torch.Tensor):
    latent_avg = latent_avg.float().numpy()
  variables = generator_variables(state_dict, fields, src, latent_avg)
  architecture = {
      "kind": "stylegan2",
      "module": MODULE,
      "fields": fields,
      "source_entry": args.generator,
      "source_entries": sorted(checkpoint),
      "has_latent_avg": latent_avg is not None,
      "n_latent": Generator(**fields).n_latent,
  }
  return Ported(variables=variables, architecture=architecture)
