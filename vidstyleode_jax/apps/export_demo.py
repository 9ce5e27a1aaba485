"""Held-out demo videos as files, so that every application can be tried on the demo model.

The demo generator is 32x32 and has no pSp encoder; its videos are rendered from known W+ codes, so their exact
inversions are exported with them. For video k of WORKDIR/demo_data/eval.npz, OUT gets:
  demo_k.mp4          the video (lossy H.264, as any real input would be)
  demo_k.npy          its inversions [frames, n_latent, style_dim] float32 (--inversions)
  demo_k_frame0.png   its first frame, a still image for `animate`
  demo_k_frame0.npy   that frame's inversion [1, n_latent, style_dim]
  demo_k.txt          its description (a source text for `edit`)
"""

import os

import numpy as np
from PIL import Image
import tqdm

from vidstyleode_jax import files
from vidstyleode_jax.apps import outputs
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.data import synthetic
from vidstyleode_jax import video_io


def _write_png(path, image):
  with files.atomic_path(path) as temp_path:
    Image.fromarray(image).save(temp_path)


def export(workdir, out, count=4, fps=8.0, progress=True):
  """Writes `count` held-out demo videos of the run in `workdir` to the folder `out`; returns their mp4 paths."""
  source = os.path.join(workdir, files.DEMO_DATA_DIR, "eval.npz")
  if not os.path.isfile(source):
    raise UserError(f"Demo videos not found: {source} (train the demo first: python -m vidstyleode_jax.train "
                    "--config=configs/demo.py --workdir=WORKDIR)")
  videos = synthetic.VideoArrays.load(source)
  if not 1 <= count <= len(videos):
    raise UserError(f"--count must be in [1, {len(videos)}] (the held-out videos in {source}), got {count}")
  os.makedirs(out, exist_ok=True)
  paths = []
  for k in tqdm.tqdm(range(count), desc="exporting", unit="video", disable=not progress):
    stem = os.path.join(out, f"demo_{k}")
    video_io.write_mp4(f"{stem}.mp4", videos.frames[k], fps)
    outputs.save_npy(f"{stem}.npy", videos.wplus[k].astype(np.float32))
    _write_png(f"{stem}_frame0.png", videos.frames[k, 0])
    outputs.save_npy(f"{stem}_frame0.npy", videos.wplus[k, :1].astype(np.float32))
    files.write_text(f"{stem}.txt", videos.descriptions[k] + "\n")
    paths.append(f"{stem}.mp4")
  return paths
