"""RAVDESS talking faces (paper setting): rosinality FFHQ-1024 StyleGAN2, pSp FFHQ inversions, CLIP, DINO.

First prepare the videos (inverted with the ported pSp encoder, config.psp.checkpoint):

  python -m vidstyleode_jax.data.prepare --config=configs/ravdess.py --videos=/path/to/ravdess_videos \
      --out=data/ravdess --split train=action_train.txt --split test=action_test.txt

then train:

  python -m vidstyleode_jax.train --config=configs/ravdess.py --workdir=/path/to/run \
      --config.data.dataset_dir=data/ravdess

Differences from configs/fashion.py follow the official RAVDESS configuration (docs/model.md): square 256x256
frames and a 1024x1024 generator (from its ported folder), 8x8 dynamics grid (64 tokens), batch 2, 2 decoded frames,
video_length 100, no skipped frames, and its own loss schedules.
"""

from vidstyleode_jax import config_files
from vidstyleode_jax import schedules

fashion = config_files.sibling(__file__, "fashion")


def get_config():
  c = fashion.get_config()
  c.data.update(dataset_dir="data/ravdess", height=256, width=256, batch_size=2, frames_decoded=2,
                video_length=100.0, skip_frames=0, num_eval_videos=4)
  c.generator.checkpoint = f"{fashion.PORTED}/stylegan2_ffhq_1024"
  c.psp = dict(checkpoint=f"{fashion.PORTED}/psp_ffhq_encode")
  c.dynamics.update(height=128, width=128)
  c.modulation.num_dynamics_tokens = 64
  c.loss.update(
      rec=schedules.ramp(warmup=50_000, start=0.01, end=1.0, plateau=100_000),
      latent=0.5,
      directional=schedules.ramp(warmup=5_000, start=0.01, end=2.0, plateau=100_000),
      consistency=schedules.ramp(warmup=0, start=0.01, end=1.0, plateau=100_000),
  )
  c.optim.learning_rate = 4e-6
  c.train.num_steps = 100_000
  return c
