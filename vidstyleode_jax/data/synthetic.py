"""Built-in demo videos, rendered by the frozen generator along smooth W+ trajectories.

Each video starts from its own W code (the mapping network applied to a random z) and moves along one of a few
motion directions in W+ (coarse and medium rows only) with a profile p_t:

  w_t = w_video + p_t * direction_k

Motion "sinusoid" (the demo): p_t = amplitude * sin(2π * cycles * t / cycle_frames + phase), cycles 1 or 2, where
cycle_frames is the video length unless given. Motion "periodic" (docs/model.md §21.6): a nod-like cycle with a
second harmonic, p_t = amplitude * (sin θ_t + 0.5 sin(2 θ_t + phase_2)) / 1.5 with θ_t = 2π * (t mod P) / P + phase,
of period P = 8, 12 or 16 frames: evaluated on t mod P, the W+ trajectory repeats exactly (bit for bit) every P
frames.
The demo draws its motion directions from `directions_seed` (the config seed), so that training and held-out videos
share them and the held-out error measures the dynamics, not directions never seen in training.

Since the frames are rendered from known codes, the exact inversions are stored with them. Each description is
derived from the trajectory: the colour of the rendered video, the motion kind k and the speed (cycles or period).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vidstyleode_jax import video_io

MOTIONS = ("swaying", "bouncing", "turning")
SPEEDS = (("slowly", 1.0), ("quickly", 2.0))  # "sinusoid": cycles per cycle_frames
PERIODS = (("slowly", 16), ("steadily", 12), ("quickly", 8))  # "periodic": period in frames
MOTION_KINDS = ("sinusoid", "periodic")
SECOND_HARMONIC = 0.5
COLOURS = ("reddish", "greenish", "bluish")


@dataclasses.dataclass(frozen=True)
class VideoArrays:
  """A set of equal-length videos held in memory.

  frames: [videos, frames, H, W, 3] uint8; wplus: [videos, frames, n_latent, style_dim] float32 exact inversions;
  descriptions: one string per video; periods: [videos] float64, the period of each video's motion in frames
  (absent from files written before it was stored).
  """

  frames: np.ndarray
  wplus: np.ndarray
  descriptions: tuple[str, ...]
  periods: np.ndarray | None = None

  def __len__(self):
    return self.frames.shape[0]

  def save(self, path):
    periods = {} if self.periods is None else dict(periods=self.periods)
    np.savez(path, frames=self.frames, wplus=self.wplus, descriptions=np.array(self.descriptions), **periods)

  @classmethod
  def load(cls, path):
    with np.load(path) as f:
      periods = f["periods"] if "periods" in f else None
      return cls(f["frames"], f["wplus"], tuple(str(d) for d in f["descriptions"]), periods)


def make_videos(render, mapping, *, num_videos, num_frames, n_latent, style_dim, amplitude, seed, directions_seed,
                motion="sinusoid", cycle_frames=None):
  """Renders `num_videos` synthetic videos.

  The draws do not depend on num_frames or cycle_frames: a longer call with the same seed continues the same videos.

  Args:
    render: W+ [n, n_latent, style_dim] -> images [n, H, W, 3] in [-1, 1] (the frozen generator).
    mapping: z [n, style_dim] -> w [n, style_dim] (the generator's mapping network).
    amplitude: motion amplitude in units of the per-channel standard deviation of W.
    seed: the codes and the motion choices derive from it.
    directions_seed: the motion directions derive from it (shared by the splits, see the module docstring).
    motion: "sinusoid" or "periodic" (see the module docstring).
    cycle_frames: the frames of one "sinusoid" time unit (default num_frames).
  """
  if motion not in MOTION_KINDS:
    raise ValueError(f"motion {motion!r} must be one of {MOTION_KINDS}")
  rng = np.random.default_rng(seed)
  w_std = np.asarray(mapping(jnp.asarray(rng.standard_normal((1024, style_dim)), jnp.float32))).std(axis=0)
  directions = np.random.default_rng(directions_seed).standard_normal((len(MOTIONS), n_latent, style_dim))
  directions = directions.astype(np.float32) * w_std
  directions[:, n_latent // 2:] = 0.0  # motion changes the coarse and medium rows, so colours stay

  w_video = np.asarray(mapping(jnp.asarray(rng.standard_normal((num_videos, style_dim)), jnp.float32)))
  kind = rng.integers(len(MOTIONS), size=num_videos)
  speeds = SPEEDS if motion == "sinusoid" else PERIODS
  speed = rng.integers(len(speeds), size=num_videos)
  phase = rng.uniform(0.0, 2.0 * np.pi, size=num_videos)
  if motion == "sinusoid":
    cycle_frames = num_frames if cycle_frames is None else cycle_frames
    t = np.arange(num_frames) / cycle_frames
    cycles = np.array([c for _, c in SPEEDS])[speed]
    profile = amplitude * np.sin(2.0 * np.pi * cycles[:, None] * t[None, :] + phase[:, None])
    period = cycle_frames / cycles
  else:
    period = np.array([p for _, p in PERIODS])[speed]
    profile = amplitude * periodic_profile(period, phase, rng.uniform(0.0, 2.0 * np.pi, size=num_videos), num_frames)
  wplus = (w_video[:, None, None, :] + profile[:, :, None, None] * directions[kind][:, None]).astype(np.float32)

  render = jax.jit(render)
  frames = np.stack([video_io.to_uint8(np.asarray(render(jnp.asarray(w)))) for w in wplus])
  mean_rgb = frames.reshape(num_videos, -1, 3).mean(axis=1)
  colour = np.argmax(mean_rgb - mean_rgb.mean(axis=0), axis=1)
  descriptions = tuple(
      f"a {COLOURS[colour[v]]} figure {MOTIONS[kind[v]]} {speeds[speed[v]][0]}" for v in range(num_videos)
  )
  return VideoArrays(frames, wplus, descriptions, period.astype(np.float64))


def periodic_profile(period, phase, phase_2, num_frames):
  """[videos, num_frames] (sin θ + SECOND_HARMONIC sin(2θ + phase_2)) / (1 + SECOND_HARMONIC), within [-1, 1],
  θ = 2π (t mod period) / period + phase.

  period: [videos] int; phase, phase_2: [videos]. Row v repeats exactly every period[v] frames.
  """
  cycle_position = np.arange(num_frames)[None, :] % period[:, None]
  theta = 2.0 * np.pi * cycle_position / period[:, None] + phase[:, None]
  return (np.sin(theta) + SECOND_HARMONIC * np.sin(2.0 * theta + phase_2[:, None])) / (1.0 + SECOND_HARMONIC)


def vocabulary_words():
  """Every word the demo descriptions can contain (for the demo tokenizer)."""
  speeds = tuple(s for s, _ in SPEEDS)
  return ("a", "figure") + COLOURS + MOTIONS + speeds + tuple(s for s, _ in PERIODS if s not in speeds)
