"""Kind `raft`: a torchvision RAFT state dict (raft_large / raft_small) -> vidstyleode_jax.models.raft.RAFT.

SRC is a `torch.save(model.state_dict())` file such as torchvision's `raft_large_C_T_SKHT_V2-ff5fadd5.pth` or
`raft_small_C_T_V2-01064c6d.pth` (read with weights_only=True), or a TorchScript archive of the same model. The keys
are translated mechanically: `layerN.M` -> layerN_M; in a Conv2dNormActivation, `.0.` (the conv) -> conv and `.1.`
(the norm) -> norm; conv weights go OIHW -> HWIO; BatchNorm `weight`, `bias`, `running_mean`, `running_var` ->
scale, bias and batch_stats mean, var; `num_batches_tracked` is dropped. The variant is raft_large when the file
has `mask_predictor.*` keys, else raft_small; every key and shape is then checked against that architecture.
"""

import argparse
import re

import jax
import jax.numpy as jnp

from port_weights import rules, torch_files
from port_weights.output import Ported, check_variables
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import raft

DESCRIPTION = (
    "torchvision RAFT state dict (raft_large_C_T_SKHT_V2-ff5fadd5.pth, raft_small_C_T_V2-01064c6d.pth, or any "
    "raft_large / raft_small state_dict saved with torch.save) -> vidstyleode_jax.models.raft.RAFT."
)
MODULE = "vidstyleode_jax.models.raft.RAFT"
MASK_KEY = "mask_predictor.conv.weight"


def module_path(prefix: str) -> tuple[str, ...]:
  """torchvision module path -> our module path: `layerN.M` -> layerN_M, a Sequential's index 0 -> conv."""
  parts = []
  for part in prefix.split("."):
    if part.isdigit() and parts and re.fullmatch(r"layer\d+", parts[-1]):
      parts[-1] = f"{parts[-1]}_{part}"
    else:
      parts.append("conv" if part == "0" else part)
  return tuple(parts)


_RULES = (
    (r".*\.num_batches_tracked", lambda m: None, None),
    (r"(.+)\.1" + rules.BATCH_NORM_TENSOR, rules.batch_norm_path(lambda m: (*module_path(m[1]), "norm")), None),
    (r"(.+)\.weight", lambda m: ("params", *module_path(m[1]), "kernel"), rules.conv_kernel),
    (r"(.+)\.bias", lambda m: ("params", *module_path(m[1]), "bias"), None),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  del parser  # no options: the variant is read from the keys


def expected_variables(variant: str) -> dict:
  """Shapes of the module's variables, without allocating them."""
  size = raft.min_image_size(variant)
  images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  return jax.eval_shape(raft.RAFT(variant, num_flow_updates=1).init, jax.random.key(0), images, images)


def port(src: str, args: argparse.Namespace) -> Ported:
  state_dict = torch_files.read_state_dict(src)
  if any(key.startswith(("module.fnet.", "fnet.")) for key in state_dict):
    raise UserError(f"{src}: this is the princeton-vl/RAFT layout (fnet, cnet, update_block); convert it with "
                    "torchvision's RAFT weights (raft_large / raft_small state dicts) instead")
  fields = {"variant": "large" if MASK_KEY in state_dict else "small"}
  try:
    trees, sources, unknown = rules.map_keys(state_dict, _RULES, ("params", "batch_stats"))
  except ValueError as error:
    raise UserError(f"{src}: {error}") from None
  trees = {collection: tree for collection, tree in trees.items() if tree}  # raft_small has no batch_stats
  check_variables(trees, expected_variables(fields["variant"]), src, sources, unknown)
  architecture = {"kind": "raft", "module": MODULE, "fields": fields}
  return Ported(variables=trees, architecture=architecture)
