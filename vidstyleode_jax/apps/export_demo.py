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


def source(workdir):
  """The held-out videos of a demo run (absent for runs on real data)."""
  return os.path.join(workdir, files.DEMO_DATA_DIR, "eval.npz")


def held_out(workdir):
  """The run's held-out demo videos: synthetic.VideoArrays."""
  path = source(workdir)
  if not os.path.isfile(path):
    raise UserError(f"Demo videos not found: {path} (train the demo first: python -m vidstyleode_jax.train "
                    "--config=configs/demo.py --workdir=WORKDIR)")
  return synthetic.VideoArrays.load(path)


def paths(out, k):
  """The files written for video k into the folder `out`: {video, inversions, image, image_inversions,
  description} -> path."""
  stem = os.path.join(out, f"demo_{k}")
  return dict(video=f"{stem}.mp4", inversions=f"{stem}.npy", image=f"{stem}_frame0.png",
              image_inversions=f"{stem}_frame0.npy", description=f"{stem}.txt")


def export(workdir, out, count=4, fps=8.0, progress=True):
  """Writes `count` held-out demo videos of the run in `workdir` to the folder `out`; returns their mp4 paths."""
  videos = held_out(workdir)
  if not 1 <= count <= len(videos):
    raise UserError(f"--count must be in [1, {len(videos)}] (the held-out videos in {source(workdir)}), got {count}")
  os.makedirs(out, exist_ok=True)
  for k in tqdm.tqdm(range(count), desc="exporting", unit="video", disable=not progress):
    written = paths(out, k)
    video_io.write_mp4(written["video"], videos.frames[k], fps)
    outputs.save_npy(written["inversions"], videos.wplus[k].astype(np.float32))
    _write_png(written["image"], videos.frames[k, 0])
    outputs.save_npy(written["image_inversions"], videos.wplus[k, :1].astype(np.float32))
    files.write_text(written["description"], videos.descriptions[k] + "\n")
  return [paths(out, k)["video"] for k in range(count)]
