"""Where training and evaluation videos come from, by config.data.kind.

`synthetic`: the built-in demo videos (data/synthetic.py), rendered once per workdir and cached there (written
atomically), together with a demo CLIP vocabulary built from their descriptions.
"""

import dataclasses
import os
import shutil
import tempfile

import numpy as np

from vidstyleode_jax import text
from vidstyleode_jax.data import synthetic


@dataclasses.dataclass(frozen=True)
class Datasets:
  train: synthetic.VideoArrays
  eval: synthetic.VideoArrays
  train_tokens: np.ndarray  # [videos, context] int32
  eval_tokens: np.ndarray
  tokenizer: text.ClipTokenizer


def _save_atomically(videos, path):
  handle, tmp = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(path))
  os.close(handle)
  videos.save(tmp)
  os.replace(tmp, path)


def _cached_videos(path, make):
  if not os.path.exists(path):
    _save_atomically(make(), path)
  return synthetic.VideoArrays.load(path)


def _demo_vocabulary(folder):
  """The demo CLIP vocabulary in folder/tokenizer, written once; safe when several processes share the folder."""
  tokenizer_dir = os.path.join(folder, "tokenizer")
  if not os.path.isdir(tokenizer_dir):
    tmp = tempfile.mkdtemp(dir=folder)
    text.write_demo_vocabulary(tmp, synthetic.vocabulary_words())
    try:
      os.rename(tmp, tokenizer_dir)
    except OSError:  # another process renamed its copy first
      shutil.rmtree(tmp)
  return tokenizer_dir


def synthetic_datasets(config, frozen_networks, frozen_vars, workdir):
  d, g = config.data, config.generator
  folder = os.path.join(workdir, "demo_data")
  os.makedirs(folder, exist_ok=True)
  render = lambda w: frozen_networks.render(frozen_vars, w)
  mapping = lambda z: frozen_networks.mapping(frozen_vars, z)
  make = lambda num_videos, seed: synthetic.make_videos(
      render, mapping, num_videos=num_videos, num_frames=d.frames_per_video, n_latent=frozen_networks.generator.n_latent,
      style_dim=g.style_dim, amplitude=d.motion_amplitude, seed=seed,
  )
  train = _cached_videos(os.path.join(folder, "train.npz"), lambda: make(d.num_train_videos, [config.seed, 0]))
  evaluation = _cached_videos(os.path.join(folder, "eval.npz"), lambda: make(d.num_eval_videos, [config.seed, 1]))

  tokenizer_dir = config.clip.tokenizer or _demo_vocabulary(folder)
  tokenizer = text.ClipTokenizer(tokenizer_dir, config.clip.context_length)
  if tokenizer.vocab_size > config.clip.vocab_size:
    raise ValueError(
        f"the tokenizer in {tokenizer_dir} has {tokenizer.vocab_size} ids, more than clip.vocab_size="
        f"{config.clip.vocab_size}"
    )
  return Datasets(train, evaluation, tokenizer(list(train.descriptions)), tokenizer(list(evaluation.descriptions)),
                  tokenizer)


def load(config, frozen_networks, frozen_vars, workdir):
  if config.data.kind == "synthetic":
    return synthetic_datasets(config, frozen_networks, frozen_vars, workdir)
  raise ValueError(
      f"config.data.kind={config.data.kind!r}: only 'synthetic' is available so far; prepared real-video datasets"
      " (data.kind='prepared') come with `python -m vidstyleode_jax.data.prepare`, which is not built yet"
  )
