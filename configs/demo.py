"""Demo: tiny VidStyleODE on built-in synthetic videos; runs anywhere with no download.

  python -m vidstyleode_jax.train --config=configs/demo.py --workdir=/tmp/vidstyleode_demo

The frozen networks (a 32x32 StyleGAN2, CLIP and DINO ViTs) are randomly initialised from the seed. The videos are
rendered by that generator along smooth W+ trajectories, so their exact inversions are known, and each description
is derived from its trajectory (colour, motion kind, speed). Expected on a 2-core CPU: a few minutes including
compilation. The demo does not learn motion yet (README, docs/model.md §21.9): the held-out reconstruction error
(eval/rec_mse in metrics.jsonl) ends about level with the content-only baseline (eval/content_mse).
"""

import ml_collections

from vidstyleode_jax import config_files
from vidstyleode_jax import schedules


# configs/demo.py:windows -- clips within 6 consecutive frames, 8 videos per batch, a reconstruction loss that leads,
# both parameter groups at 3e-4, 3000 steps: the setting under which the demo learns motion (docs/model.md §21.9).
WINDOWS = {"data.clip_span": 6, "data.batch_size": 8, "loss.rec": 10.0, "optim.learning_rate": 3e-4,
           "optim.dynamics_lr_multiplier": 1.0, "train.num_steps": 3000}
ARGS = ("", "windows")


def get_config(arg=""):
  if arg not in ARGS:
    raise ValueError(f"configs/demo.py:{arg}: expected one of {ARGS}")
  c = ml_collections.ConfigDict()
  c.seed = 907
  c.frozen_compute_dtype = "float32"  # or "bfloat16": generator, CLIP and DINO compute (params stay float32)

  c.data = dict(
      kind="synthetic",
      height=32,
      width=32,
      batch_size=4,
      frames_per_clip=6,  # T: frames given to the dynamics encoder
      frames_decoded=3,  # N: frames rendered and supervised per step
      video_length=24.0,  # frames per unit of ODE time
      num_train_videos=96,
      num_eval_videos=16,
      frames_per_video=24,
      motion_amplitude=0.8,  # in units of the per-channel std of W, on the coarse and medium W+ rows
      motion="sinusoid",  # or "periodic": cycles of a few stated periods (data/synthetic.py)
      skip_frames=0,  # leading frames of every video left out of sampling
      clip_span=0,  # 0: clips over the whole video, as the paper; > 0: within that many consecutive frames
      read_threads=1,  # threads reading the clips of a batch
      prefetch=2,  # batches kept ready ahead of the train step
  )
  c.generator = dict(
      checkpoint="",  # empty: random weights from the seed
      resolution=32,
      aspect=1,
      style_dim=64,
      n_mlp=2,
      channel_multiplier=2,
      channel_divisor=32,
      remat=False,  # recompute generator activations in the backward pass
  )
  c.clip = dict(
      checkpoint="",
      tokenizer="",  # empty: a demo vocabulary built from the demo descriptions
      remat=False,  # recompute CLIP activations in the backward pass, one image at a time
      embed_dim=64,
      image_size=32,
      vision_patch_size=8,
      vision_width=64,
      vision_depth=2,
      vision_heads=2,
      vocab_size=1024,
      context_length=16,
      text_width=64,
      text_depth=2,
      text_heads=2,
  )
  c.dino = dict(
      checkpoint="",
      remat=False,  # recompute DINO activations in the backward pass, one image at a time
      patch_size=8,
      width=64,
      depth=3,
      num_heads=4,
      mlp_dim=256,
      pretrained_grid=4,
      short_side=32,
      key_layer=2,
      cls_layer=1,
  )
  c.dynamics = dict(
      height=16,
      width=16,
      base_channels=16,
      num_downsamples=2,
      spatial_channels=32,
      ode_hidden_channels=32,
      rtol=1e-3,
      atol=1e-4,
      max_steps=64,
      mask_mode="static",
      mask_num_hidden=0,
      kind="ode",  # the latent dynamics: "ode", "ode2" (second order) or "lstm" (docs/model.md §21)
  )
  c.modulation = dict(
      width=64,
      num_heads=4,
      num_self_layers=2,
      num_cross_layers=2,
      self_mlp_dim=256,
      cross_mlp_dim=128,
      num_dynamics_tokens=16,
      self_attention=True,
      fusion="cross_attention",  # or "concat"
      init_std=0.125,  # 1 / sqrt(width); the paper's 0.02 passes too little motion at this width (docs/model.md §21.9)
  )
  c.model = dict(content="mean")  # z_C from the clip's W+: "mean", "first" or "random" frame
  # output_activation "linear": the paper's leaky ReLU lets Δ barely go below zero (docs/model.md §21.9)
  c.mapper = dict(group_sizes=(2, 3, 3), group_depths=(2, 2, 2), delta_scale=0.1, residual=True,
                  output_activation="linear")
  c.loss = dict(
      rec=1.0,
      latent=1.0,
      latent_eps=2.0,
      vgg=1.0,
      perceptual="dino",  # or "vgg": a VGG16 perceptual loss replaces the DINO structure and appearance losses
      structure_weight=0.8,
      appearance_weight=0.2,
      directional=schedules.ramp(warmup=100, start=0.01, end=0.5, plateau=400),
      consistency=0.1,
      manipulation_strength=2.0,
      clip_frames=3,
  )
  c.optim = dict(learning_rate=1e-3, dynamics_lr_multiplier=5.0, dynamics_b2=0.999, mapping_b2=0.99, eps=1e-8)
  # max_consecutive_skips: bad (non-finite) steps in a row that stop the run; each one alone is skipped
  c.train = dict(num_steps=400, log_every=20, checkpoint_every=200, sample_every=200, keep_checkpoints=2,
                 max_consecutive_skips=10)
  return config_files.set_fields(c, WINDOWS) if arg == "windows" else c
