"""Built-in demo videos, rendered by the frozen generator along smooth W+ trajectories.

Each video starts from its own W code (the mapping network applied to a random z) and moves along one of a few
shared motion directions in W+ (coarse and medium rows only) with a sinusoidal profile:

  w_t = w_video + amplitude * sin(2π * cycles * t / frames + phase) * direction_k

Since the frames are rendered from known codes, the exact inversions are stored with them. Each description is
derived from the trajectory: the colour of the rendered video, the motion kind k and the speed (cycles).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vidstyleode_jax import video_io

MOTIONS = ("swaying", "bouncing", "turning")
SPEEDS = (("slowly", 1.0), ("quickly", 2.0))
COLOURS = ("reddish", "greenish", "bluish")


@dataclasses.dataclass(frozen=True)
class VideoArrays:
  """A set of equal-length videos held in memory.

  frames: [videos, frames, H, W, 3] uint8; wplus: [videos, frames, n_latent, style_dim] float32 exact inversions;
  descriptions: one string per video.
  """

  frames: np.ndarray
  wplus: np.ndarray
  descriptions: tuple[str, ...]

  def __len__(self):
    return self.frames.shape[0]

  def save(self, path):
    np.savez(path, frames=self.frames, wplus=self.wplus, descriptions=np.array(self.descriptions))

  @classmethod
  def load(cls, path):
    with np.load(path) as f:
      return cls(f["frames"], f["wplus"], tuple(str(d) for d in f["descriptions"]))


def make_videos(render, mapping, *, num_videos, num_frames, n_latent, style_dim, amplitude, seed):
  """Renders `num_videos` synthetic videos.

  Args:
    render: W+ [n, n_latent, style_dim] -> images [n, H, W, 3] in [-1, 1] (the frozen generator).
    mapping: z [n, style_dim] -> w [n, style_dim] (the generator's mapping network).
    amplitude: motion amplitude in units of the per-channel standard deviation of W.
    seed: all randomness (codes, directions, motion choices) derives from it.
  """
  rng = np.random.default_rng(seed)
  w_std = np.asarray(mapping(jnp.asarray(rng.standard_normal((1024, style_dim)), jnp.float32))).std(axis=0)
  directions = rng.standard_normal((len(MOTIONS), n_latent, style_dim)).astype(np.float32) * w_std
  directions[:, n_latent // 2:] = 0.0  # motion changes the coarse and medium rows, so colours stay

  w_video = np.asarray(mapping(jnp.asarray(rng.standard_normal((num_videos, style_dim)), jnp.float32)))
  motion = rng.integers(len(MOTIONS), size=num_videos)
  speed = rng.integers(len(SPEEDS), size=num_videos)
  phase = rng.uniform(0.0, 2.0 * np.pi, size=num_videos)

  t = np.arange(num_frames) / num_frames
  cycles = np.array([c for _, c in SPEEDS])[speed]
  profile = amplitude * np.sin(2.0 * np.pi * cycles[:, None] * t[None, :] + phase[:, None])
  wplus = (w_video[:, None, None, :] + profile[:, :, None, None] * directions[motion][:, None]).astype(np.float32)

  render = jax.jit(render)
  frames = np.stack([video_io.to_uint8(np.asarray(render(jnp.asarray(w)))) for w in wplus])
  mean_rgb = frames.reshape(num_videos, -1, 3).mean(axis=1)
  colour = np.argmax(mean_rgb - mean_rgb.mean(axis=0), axis=1)
  descriptions = tuple(
      f"a {COLOURS[colour[v]]} figure {MOTIONS[motion[v]]} {SPEEDS[speed[v]][0]}" for v in range(num_videos)
  )
  return VideoArrays(frames, wplus, descriptions)


def vocabulary_words():
  """Every word the demo descriptions can contain (for the demo tokenizer)."""
  return ("a", "figure") + COLOURS + MOTIONS + tuple(s for s, _ in SPEEDS)
