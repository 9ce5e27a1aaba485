"""A region of the frame (pixel box or mask image) as a mask on the dynamics grid z0 [batch, h', w', C].

The dynamics state keeps a coarse spatial layout of the frame (paper §4.1, local motion transfer): cell (i, j) of the
h' x w' grid covers rows i * H / h' ... (i + 1) * H / h' of the H x W model frame. A region is given on the input
frames as read, brought to the model frame as the frames are (data/inputs.FrameFormat), and a cell belongs to it when
at least half of the cell's area does.
"""

import numpy as np
from PIL import Image

from vidstyleode_jax.errors import UserError


def parse_box(text, height, width):
  """'x0,y0,x1,y1' (pixels, x1 and y1 exclusive) -> [height, width] bool mask; must lie inside the frame."""
  try:
    x0, y0, x1, y1 = (int(v) for v in text.split(","))
  except ValueError:
    raise UserError(f"--region must be four integers x0,y0,x1,y1, got {text!r}") from None
  if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
    raise UserError(f"--region {text} is outside the {width}x{height} frame (x0 < x1 <= {width}, y0 < y1 <= {height})")
  mask = np.zeros((height, width), bool)
  mask[y0:y1, x0:x1] = True
  return mask


def read_mask(path):
  """A mask image (any size; white = inside) -> [height, width] bool."""
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("L")) >= 128
  except FileNotFoundError:
    raise UserError(f"Mask not found: {path}") from None
  except (OSError, ValueError) as err:
    raise UserError(f"Could not read mask {path}: {err}") from None


def to_frame(mask, frame_format):
  """[h, w] bool on the input frames -> [height, width] bool on the model frames (a data/inputs.FrameFormat)."""
  image = np.repeat(mask[None, :, :, None].astype(np.uint8) * 255, 3, axis=-1)
  return frame_format.frames(image, skip=False)[0][0, :, :, 0] >= 128


def to_grid(mask, grid_height, grid_width):
  """[height, width] bool -> [grid_height, grid_width] float32 in {0, 1}: cells at least half covered are 1."""
  coverage = Image.fromarray(mask.astype(np.float32)).resize((grid_width, grid_height), Image.Resampling.BOX)
  return (np.asarray(coverage) >= 0.5).astype(np.float32)
