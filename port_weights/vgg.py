"""Kind `vgg`: torchvision's VGG16 state dict -> vidstyleode_jax.models.vgg.VGG16 (docs/weight_formats.md §9).

SRC is a `torch.save(model.state_dict())` file of `torchvision.models.vgg16`, such as torchvision's ImageNet weights
`vgg16-397923af.pth` (read with weights_only=True), or a TorchScript archive of the same model. `features.K.weight`
and `features.K.bias` of the ten convolutions up to conv4_3 (K = 0, 2, 5, 7, 10, 12, 14, 17, 19, 21) become
conv{block}_{i}, weights OIHW -> HWIO; the block-5 convolutions (features.24, 26, 28) and the classifier are not
used by the perceptual loss and are dropped. The widths are read from the shapes; every shape is then checked.
vgg16_bn files (BatchNorm between the convolutions, other indices) are refused.
"""

import argparse

import jax
import jax.numpy as jnp

from port_weights import rules, torch_files
from port_weights.output import Ported, check_variables
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import vgg

DESCRIPTION = (
    "torchvision VGG16 state dict (vgg16-397923af.pth, or any torchvision vgg16 state_dict saved with torch.save) "
    "-> vidstyleode_jax.models.vgg.VGG16 (blocks 1-4, for the perceptual loss)."
)
MODULE = "vidstyleode_jax.models.vgg.VGG16"
UNUSED_FEATURES = (24, 26, 28)  # conv5_1 .. conv5_3


def conv_names() -> dict[int, str]:
  """torchvision's features index of each convolution up to conv4_3 -> our name (ReLUs and pools in between)."""
  names, index = {}, 0
  for block, depth in enumerate(vgg.BLOCK_DEPTHS, start=1):
    for i in range(1, depth + 1):
      names[index] = f"conv{block}_{i}"
      index += 2  # the convolution and its ReLU
    index += 1  # the max pool
  return names


CONV_NAMES = conv_names()
conv_name = lambda index: CONV_NAMES.get(int(index), f"features.{index}")  # other indices: reported unexpected
_RULES = (
    (r"classifier\..+", lambda m: None, None),
    (rf"features\.({'|'.join(map(str, UNUSED_FEATURES))})\.(weight|bias)", lambda m: None, None),
    (r"features\.(\d+)\.weight", lambda m: ("params", conv_name(m[1]), "kernel"), rules.conv_kernel),
    (r"features\.(\d+)\.bias", lambda m: ("params", conv_name(m[1]), "bias"), None),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  del parser  # no options: the widths are read from the shapes


def expected_variables(widths) -> dict:
  """Shapes of the module's variables, without allocating them."""
  images = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
  return jax.eval_shape(vgg.VGG16(widths).init, jax.random.key(0), images)


def port(src: str, args: argparse.Namespace) -> Ported:
  state_dict = torch_files.read_state_dict(src)
  if any(key.endswith("running_mean") for key in state_dict):
    raise UserError(f"{src}: this is a vgg16_bn state dict (BatchNorm layers); port torchvision's plain vgg16 "
                    "(vgg16-397923af.pth) instead")
  first_keys = [f"features.{index}.weight" for index, name in CONV_NAMES.items() if name.endswith("_1")]
  missing = [key for key in first_keys if key not in state_dict]
  if missing:
    raise UserError(f"{src}: not a torchvision vgg16 state dict: missing key(s) {missing}")
  widths = [int(state_dict[key].shape[0]) for key in first_keys]
  try:
    trees, sources, unknown = rules.map_keys(state_dict, _RULES, ("params",))
  except ValueError as error:
    raise UserError(f"{src}: {error}") from None
  check_variables(trees, expected_variables(widths), src, sources, unknown)
  architecture = {"kind": "vgg", "module": MODULE, "fields": {"widths": widths}}
  return Ported(variables=trees, architecture=architecture)
