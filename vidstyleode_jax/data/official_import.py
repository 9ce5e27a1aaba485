"""Precomputed inversions in the official layout (docs/model.md §2.1), for migrating an existing dataset.

  INVERSION_ROOT/<video>/<frame-stem>.pt   one torch tensor per frame, [1, n_latent, style_dim] or [n_latent, style_dim]

Each kept frame of the frame folder img_root/<video>/ must have the inversion of the same stem. Reading .pt files
needs PyTorch, which only this path imports (training does not depend on it); tensors are loaded with
`weights_only=True`, so a file cannot run code.
"""

import os

import numpy as np

from vidstyleode_jax.data import inputs
from vidstyleode_jax.errors import UserError

INVERSION_EXTENSION = ".pt"


def _torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("--import_inversions reads PyTorch .pt files and needs torch: pip install torch") from None
  return torch


def check_torch():
  """Raises UserError early if PyTorch is not installed."""
  _torch()


def read_inversions(inversion_root, video, stems, wplus_shape):
  """Reads the official inversions of one video's kept frames.

  Args:
    inversion_root: the official inversion_root.
    video: the inputs.VideoInput (a frame folder).
    stems: the kept frames' file stems, in frame order.
    wplus_shape: (n_latent, style_dim) the config expects.

  Returns:
    [time, n_latent, style_dim] float32, one row per stem.

  Raises:
    UnusableVideo: a frame has no inversion, an inversion has no frame, or a file is unreadable or of another shape.
  """
  torch = _torch()
  if video.kind != "frames":
    raise inputs.UnusableVideo(video.path, "--import_inversions needs a frame folder (the official layout), not a "
                               "video file")
  folder = os.path.join(inversion_root, video.name)
  if not os.path.isdir(folder):
    raise inputs.UnusableVideo(folder, "no inversion folder for this video")
  available = {os.path.splitext(entry)[0] for entry in os.listdir(folder) if entry.endswith(INVERSION_EXTENSION)}
  all_frame_stems = {os.path.splitext(os.path.basename(path))[0] for _, path in inputs.frame_files(video.path)}
  missing = [stem for stem in stems if stem not in available]
  extra = sorted(available - all_frame_stems)
  if missing or extra:
    details = [f"no inversion for frame(s) {missing[:3]}"] if missing else []
    details += [f"no frame for inversion(s) {extra[:3]}"] if extra else []
    raise inputs.UnusableVideo(folder, f"{len(all_frame_stems)} frames but {len(available)} inversions: "
                               + "; ".join(details))
  codes = []
  for stem in stems:
    path = os.path.join(folder, stem + INVERSION_EXTENSION)
    try:
      tensor = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many unrelated types on a bad file
      raise inputs.UnusableVideo(path, f"unreadable inversion ({type(error).__name__}: {error})") from None
    if not isinstance(tensor, torch.Tensor):
      raise inputs.UnusableVideo(path, f"holds a {type(tensor).__name__}, expected one tensor")
    code = tensor.detach().to(torch.float32).numpy()
    if code.ndim == 3 and code.shape[0] == 1:
      code = code[0]
    if code.shape != tuple(wplus_shape):
      raise inputs.UnusableVideo(path, f"inversion of shape {list(tensor.shape)}, expected [1, {wplus_shape[0]}, "
                                 f"{wplus_shape[1]}] or {list(wplus_shape)} (the config's generator)")
    codes.append(code)
  return np.stack(codes).astype(np.float32)
