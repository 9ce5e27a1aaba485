"""Reading a state dict from a TorchScript archive or from a plain `torch.save` file (kinds clip, inception, raft)."""

import zipfile
from typing import Mapping

import torch

from vidstyleode_jax.errors import UserError


def is_torchscript(path: str) -> bool:
  """TorchScript archives are zip files with a constants.pkl; torch.save files have none."""
  if not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as archive:
    return any(name.endswith("/constants.pkl") for name in archive.namelist())


def read_state_dict(src: str) -> dict:
  """The state dict of a TorchScript archive (`torch.jit.load(...).state_dict()`, its code is never run) or of a
  plain torch.save file (read with weights_only=True).

  Raises:
    UserError: naming the file when it is neither, or holds something other than a state dict.
  """
  try:
    if is_torchscript(src):
      return dict(torch.jit.load(src, map_location="cpu").state_dict())
    state_dict = torch.load(src, map_location="cpu", weights_only=True)
  except Exception as error:  # torch raises many types for files it cannot read
    raise UserError(f"{src}: not a readable TorchScript archive or torch.save file: {error}") from None
  if not isinstance(state_dict, Mapping):
    raise UserError(f"{src}: expected a state dict, found {type(state_dict).__name__}")
  return dict(state_dict)
