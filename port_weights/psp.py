"""Kind `psp`: a pixel2style2pixel checkpoint (docs/weight_formats.md §3) -> vidstyleode_jax.models.psp.PSPEncoder.

The file is a `torch.save` dict: `state_dict` (pSp's `net.state_dict()`: `encoder.*` = GradualStyleEncoder on
IR-SE50, `decoder.*` = a rosinality generator), `latent_avg` ([n_styles, style_dim], only with
`start_from_latent_avg`; may be a CUDA tensor) and `opts` (a plain dict). It is read with weights_only=True on CPU.

Output variables: the encoder's collections at the top level ("params", "batch_stats" and, when pSp adds it,
"latent_avg"), so that `PSPEncoder(**fields).apply(variables, images)` encodes directly (Flax ignores the extra
collection), plus the generator under "decoder": {"params", "noise"} for
`Generator(**architecture["decoder"]["fields"]).apply(variables["decoder"], w_plus)`. The architecture is inferred
from the keys (unit count, stage depths, style count and width, input channels, input size from the coarse
blocks' conv count) and checked against `opts`.
"""

import argparse
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch

from port_weights import rules, stylegan2
from port_weights.output import Ported, check_variables
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import psp
from vidstyleode_jax.models.stylegan2 import Generator

DESCRIPTION = (
    "pixel2style2pixel checkpoint (.pt: torch.save dict with 'state_dict' (encoder.* GradualStyleEncoder IR-SE50, "
    "decoder.* rosinality generator), 'latent_avg', 'opts') -> vidstyleode_jax.models.psp.PSPEncoder, with the "
    "decoder as vidstyleode_jax.models.stylegan2.Generator under the 'decoder' entry."
)
MODULE = "vidstyleode_jax.models.psp.PSPEncoder"
DECODER_MODULE = "vidstyleode_jax.models.stylegan2.Generator"
IR_SE50_UNITS = (3, 4, 14, 3)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  del parser  # no options: everything is inferred from the file


def _dense_from_conv1x1(array: np.ndarray) -> np.ndarray:
  """1x1 conv weight [out, in, 1, 1] -> Dense kernel [in, out]."""
  if array.ndim != 4 or array.shape[2:] != (1, 1):
    raise ValueError("expected a 1x1 conv weight [out, in, 1, 1]")
  return array[:, :, 0, 0].T


def _transpose(array: np.ndarray) -> np.ndarray:
  if array.ndim != 2:
    raise ValueError("expected a linear weight [out, in]")
  return array.T


# (encoder key pattern without the `encoder.` prefix, match -> (collection, *path) or None to drop the key,
# conversion or None); see port_weights/rules.py.
_RULES = (
    (r".*\.num_batches_tracked", lambda m: None, None),
    (r"input_layer\.1" + rules.BATCH_NORM_TENSOR, rules.batch_norm_path(lambda m: ("stem_bn",)), None),
    (r"body\.(\d+)\.res_layer\.0" + rules.BATCH_NORM_TENSOR,
     rules.batch_norm_path(lambda m: (f"unit_{m[1]}", "bn_in")), None),
    (r"body\.(\d+)\.res_layer\.4" + rules.BATCH_NORM_TENSOR,
     rules.batch_norm_path(lambda m: (f"unit_{m[1]}", "bn_out")), None),
    (r"body\.(\d+)\.shortcut_layer\.1" + rules.BATCH_NORM_TENSOR,
     rules.batch_norm_path(lambda m: (f"unit_{m[1]}", "shortcut_bn")), None),
    (r"input_layer\.0\.weight", lambda m: ("params", "stem_conv", "kernel"), rules.conv_kernel),
    (r"input_layer\.2\.weight", lambda m: ("params", "stem_prelu", "weight"), None),
    (r"body\.(\d+)\.res_layer\.1\.weight", lambda m: ("params", f"unit_{m[1]}", "conv_in", "kernel"),
     rules.conv_kernel),
    (r"body\.(\d+)\.res_layer\.2\.weight", lambda m: ("params", f"unit_{m[1]}", "prelu", "weight"), None),
    (r"body\.(\d+)\.res_layer\.3\.weight", lambda m: ("params", f"unit_{m[1]}", "conv_out", "kernel"),
     rules.conv_kernel),
    (r"body\.(\d+)\.res_layer\.5\.(fc1|fc2)\.weight",
     lambda m: ("params", f"unit_{m[1]}", "squeeze_excite", m[2], "kernel"), _dense_from_conv1x1),
    (r"body\.(\d+)\.shortcut_layer\.0\.weight", lambda m: ("params", f"unit_{m[1]}", "shortcut_conv", "kernel"),
     rules.conv_kernel),
    (r"latlayer1\.weight", lambda m: ("params", "lateral_c2", "kernel"), rules.conv_kernel),
    (r"latlayer1\.bias", lambda m: ("params", "lateral_c2", "bias"), None),
    (r"latlayer2\.weight", lambda m: ("params", "lateral_c1", "kernel"), rules.conv_kernel),
    (r"latlayer2\.bias", lambda m: ("params", "lateral_c1", "bias"), None),
    (r"styles\.(\d+)\.convs\.(\d*[02468])\.weight",
     lambda m: ("params", f"style_{m[1]}", f"conv_{int(m[2]) // 2}", "kernel"), rules.conv_kernel),
    (r"styles\.(\d+)\.convs\.(\d*[02468])\.bias",
     lambda m: ("params", f"style_{m[1]}", f"conv_{int(m[2]) // 2}", "bias"), None),
    (r"styles\.(\d+)\.linear\.weight", lambda m: ("params", f"style_{m[1]}", "linear", "kernel"), _transpose),
    (r"styles\.(\d+)\.linear\.bias", lambda m: ("params", f"style_{m[1]}", "linear", "bias"), None),
)


def map_encoder(state_dict: Mapping[str, np.ndarray], src: str) -> tuple[dict, dict, list[str]]:
  """Maps pSp encoder keys (without the `encoder.` prefix) onto PSPEncoder's "params" and "batch_stats" trees.

  Returns:
    trees: {"params": ..., "batch_stats": ...}, nested dicts of float32 numpy arrays.
    sources: (collection, *path) of every leaf -> (file key, its shape), for error messages.
    unknown: the keys (with prefix) that match no rule; BN `num_batches_tracked` is ignored.

  Raises:
    UserError: naming the key and its shape when an array has the wrong rank.
  """
  try:
    return rules.map_keys(state_dict, _RULES, ("params", "batch_stats"), key_prefix="encoder.")
  except ValueError as error:
    raise UserError(f"{src}: {error}") from None


def _shape(state_dict: Mapping[str, np.ndarray], key: str, src: str) -> tuple[int, ...]:
  if key not in state_dict:
    raise UserError(f"{src}: missing key 'encoder.{key}', needed to infer the architecture")
  return tuple(state_dict[key].shape)


def infer_encoder_fields(state_dict: Mapping[str, np.ndarray], src: str) -> dict:
  """PSPEncoder fields from the encoder keys (without prefix): stage depths, style count and width, input size.

  Raises:
    UserError: when the unit count is not IR-SE50's 24 or a key needed for the inference is missing.
  """
  units = {int(match[1]) for key in state_dict if (match := re.match(r"body\.(\d+)\.", key))}
  if units != set(range(sum(IR_SE50_UNITS))):
    raise UserError(f"{src}: found {len(units)} bottleneck units 'encoder.body.*', expected the "
                    f"{sum(IR_SE50_UNITS)} of IR-SE50 (pSp's GradualStyleEncoder supports only num_layers 50)")
  last_units = np.cumsum(IR_SE50_UNITS) - 1
  stage_channels = [_shape(state_dict, f"body.{n}.res_layer.1.weight", src)[0] for n in last_units]
  n_styles = len({match[1] for key in state_dict if (match := re.match(r"styles\.(\d+)\.", key))})
  style_dim = _shape(state_dict, "styles.0.linear.weight", src)[0]
  coarse_convs = len({match[1] for key in state_dict if (match := re.match(r"styles\.0\.convs\.(\d+)\.", key))})
  return dict(n_styles=n_styles, style_dim=style_dim, stage_channels=stage_channels,
              stage_units=list(IR_SE50_UNITS), input_size=16 * 2**coarse_convs)


def expected_encoder_variables(encoder: psp.PSPEncoder, input_channels: int) -> dict:
  """Shapes of the encoder's collections, without allocating them."""
  images = jax.ShapeDtypeStruct((1, encoder.input_size, encoder.input_size, input_channels), jnp.float32)
  return jax.eval_shape(encoder.init, jax.random.key(0), images)


def _check_opts(opts: Mapping[str, Any], src: str) -> None:
  """Refuses pSp variants this port does not implement: other encoders and learn_in_w."""
  encoder_type = opts.get("encoder_type", "GradualStyleEncoder")
  if encoder_type != "GradualStyleEncoder":
    raise UserError(f"{src}: opts['encoder_type'] is {encoder_type!r}; only 'GradualStyleEncoder' is supported")
  if opts.get("learn_in_w", False):
    raise UserError(f"{src}: opts['learn_in_w'] is True (a W encoder); only the W+ GradualStyleEncoder is supported")


def encoder_variables(state_dict: Mapping[str, np.ndarray], src: str, input_channels: int,
                      latent_avg: np.ndarray | None = None, unexpected_keys: Sequence[str] = ()) -> tuple[dict, dict]:
  """Infers the PSPEncoder fields, converts the encoder keys and checks them against the module's own variables.

  Args:
    state_dict: pSp encoder keys without the `encoder.` prefix -> float32 numpy arrays.
    src: the source file, named in errors.
    input_channels: channels of the input images (pSp's input_nc).
    latent_avg: [n_styles, style_dim] to add to the codes (pSp's start_from_latent_avg), or None.
    unexpected_keys: keys of the file that belong to neither encoder nor decoder, reported as unexpected.

  Returns:
    (fields, variables): PSPEncoder constructor fields; {"params", "batch_stats"[, "latent_avg"]} float32 arrays.

  Raises:
    UserError: naming the file and the first unexpected, missing or mis-shaped key with its shapes.
  """
  fields = dict(infer_encoder_fields(state_dict, src), add_latent_avg=latent_avg is not None)
  trees, sources, unknown = map_encoder(state_dict, src)
  if latent_avg is not None:
    trees["latent_avg"] = {"w_plus": latent_avg}
    sources[("latent_avg", "w_plus")] = ("latent_avg", tuple(latent_avg.shape))
  expected = expected_encoder_variables(psp.PSPEncoder(**fields), input_channels)
  check_variables(trees, expected, src, sources, [*unexpected_keys, *unknown])
  return fields, trees


def port(src: str, args: argparse.Namespace) -> Ported:
  checkpoint = stylegan2.load_torch_file(src)
  if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
    found = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
    raise UserError(f"{src}: expected a dict with a 'state_dict' entry (a pSp checkpoint), found {found}")
  opts = checkpoint.get("opts") or {}
  opts = vars(opts) if isinstance(opts, argparse.Namespace) else opts
  if not isinstance(opts, Mapping):
    raise UserError(f"{src}: entry 'opts' is a {type(opts).__name__}, expected a dict of pSp options")
  _check_opts(opts, src)
  encoder_dict, decoder_dict, unexpected = {}, {}, []
  for key, value in checkpoint["state_dict"].items():
    prefix, _, rest = key.partition(".")
    if prefix in ("encoder", "decoder") and isinstance(value, torch.Tensor):
      (encoder_dict if prefix == "encoder" else decoder_dict)[rest] = value.float().numpy()
    else:
      unexpected.append(key)

  input_channels = _shape(encoder_dict, "input_layer.0.weight", src)[1]
  if input_channels != opts.get("input_nc", input_channels):
    raise UserError(f"{src}: key 'encoder.input_layer.0.weight' takes {input_channels} input channels, but "
                    f"opts['input_nc'] is {opts['input_nc']}")
  latent_avg = checkpoint.get("latent_avg")
  if opts.get("start_from_latent_avg", latent_avg is not None):
    if not isinstance(latent_avg, torch.Tensor):
      raise UserError(f"{src}: opts['start_from_latent_avg'] is set but the file has no 'latent_avg' tensor")
    latent_avg = latent_avg.float().numpy()
  else:
    latent_avg = None  # pSp adds it only with start_from_latent_avg
  fields, trees = encoder_variables(encoder_dict, src, input_channels, latent_avg, unexpected)
  encoder = psp.PSPEncoder(**fields)

  if not decoder_dict:
    raise UserError(f"{src}: no 'decoder.*' keys; a pSp checkpoint holds its StyleGAN2 generator there")
  decoder_fields = stylegan2.infer_fields(decoder_dict, src)
  decoder = Generator(**decoder_fields)
  if (decoder.n_latent, decoder.style_dim) != (encoder.n_styles, encoder.style_dim):
    raise UserError(f"{src}: the encoder writes W+ of shape [{encoder.n_styles}, {encoder.style_dim}] but the "
                    f"decoder reads [{decoder.n_latent}, {decoder.style_dim}]")
  output_size = opts.get("output_size", decoder.resolution)
  if output_size != decoder.resolution:
    raise UserError(f"{src}: opts['output_size'] is {output_size} but the decoder keys describe a "
                    f"{decoder.resolution} px generator")
  source_of = {key: (f"decoder.{key}", tuple(value.shape)) for key, value in decoder_dict.items()}
  trees["decoder"] = stylegan2.generator_variables(decoder_dict, decoder_fields, src, source_of=source_of)

  architecture = {
      "kind": "psp",
      "module": MODULE,
      "fields": fields,
      "input_channels": input_channels,
      "source_entries": sorted(checkpoint),
      "decoder": {"module": DECODER_MODULE, "fields": decoder_fields,
                  "note": "variables['decoder'] = {'params', 'noise'} of this generator"},
      "opts": {key: opts[key] for key in ("encoder_type", "dataset_type", "output_size", "start_from_latent_avg",
                                          "learn_in_w", "input_nc", "label_nc") if key in opts},
  }
  return Ported(variables=trees, architecture=architecture)
