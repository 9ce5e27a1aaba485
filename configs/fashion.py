"""Fashion videos (paper setting): StyleGAN-Human 1024x512, CLIP ViT-B/32, DINO ViT-B/16.

First prepare the videos (frame folders and the official StyleGAN-Human inversions, or --psp=DIR to invert them):

  python -m vidstyleode_jax.data.prepare --config=configs/fashion.py --videos=/path/to/img_root \
      --import_inversions=/path/to/inversion_root --out=data/fashion \
      --split train=fashion_train_videos.txt --split test=fashion_test_videos.txt

then train:

  python -m vidstyleode_jax.train --config=configs/fashion.py --workdir=/path/to/run \
      --config.data.dataset_dir=data/fashion \
      --config.generator.checkpoint=/path/to/ported/stylegan_human_v2_1024 \
      --config.clip.checkpoint=/path/to/ported/clip_vit_b32 --config.dino.checkpoint=/path/to/ported/dino_vitb16

Every value follows the official configuration (docs/model.md). The frozen networks' architectures are not here:
each comes from its ported folder's architecture.json (StyleGAN-Human: 1024x512, conv_clamp 256; CLIP ViT-B/32;
DINO ViT-B/16), and the CLIP tokenizer is the ported CLIP's (port it with --bpe). Without the ported weights and the
prepared dataset the run stops at start-up and names what is missing. The schedules plateau at 200k steps; the
original trains on 1 GPU with batch 3. `python -m vidstyleode_jax.bench --config=configs/fashion.py --loader_only`
measures the input pipeline alone.
"""

import ml_collections

from vidstyleode_jax import schedules

PORTED = "ported"  # the default folder that `python -m port_weights` writes to


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 907
  c.frozen_compute_dtype = "float32"  # or "bfloat16": generator, CLIP and DINO compute (params stay float32)
  c.data = dict(
      kind="prepared",
      dataset_dir="data/fashion",
      height=256,
      width=192,
      batch_size=3,
      frames_per_clip=8,
      clip_span=0,  # 0: clips over the whole video, as the paper; > 0: within that many consecutive frames
      frames_decoded=4,
      video_length=50.0,
      skip_frames=5,  # leading frames of every video dropped (by `prepare`, when it writes the dataset)
      train_split="train",
      eval_split="test",
      num_eval_videos=6,  # the first videos of eval_split, evaluated and sampled during training
      read_threads=6,  # threads reading the clips of a batch
      prefetch=4,  # batches kept ready ahead of the train step
  )
  # The architectures come from the ported folders; these sections hold the choices only.
  c.generator = dict(
      checkpoint=f"{PORTED}/stylegan_human_v2_1024",
      remat=False,  # recompute generator activations in the backward pass
  )
  c.clip = dict(
      checkpoint=f"{PORTED}/clip_vit_b32",
      tokenizer="",  # empty: the vocabulary ported with the CLIP checkpoint (--bpe)
      remat=False,  # recompute CLIP activations in the backward pass, one image at a time
  )
  c.dino = dict(
      checkpoint=f"{PORTED}/dino_vitb16",
      remat=False,  # recompute DINO activations in the backward pass, one image at a time
      short_side=244,  # images are resized to this short side before DINO (224 in Splice)
      key_layer=11,  # the block whose attention keys give the structure loss's self-similarity
      cls_layer=8,  # the block whose CLS token is the appearance loss's descriptor
  )
  c.dynamics = dict(
      height=128,
      width=96,
      base_channels=32,
      num_downsamples=4,
      spatial_channels=256,
      ode_hidden_channels=128,
      rtol=1e-3,
      atol=1e-4,
      max_steps=4096,
      mask_mode="static",
      mask_num_hidden=0,
      kind="ode",  # the latent dynamics: "ode", "ode2" (second order) or "lstm" (docs/model.md §21)
  )
  c.modulation = dict(
      width=512,
      num_heads=8,
      num_self_layers=6,
      num_cross_layers=8,
      self_mlp_dim=2048,
      cross_mlp_dim=1024,
      num_dynamics_tokens=48,
      self_attention=True,
      fusion="cross_attention",  # or "concat"
      init_std=0.02,  # attention, MLP and head kernels, as in the original
  )
  c.model = dict(content="mean")  # z_C from the clip's W+: "mean", "first" or "random" frame
  c.mapper = dict(group_sizes=(4, 6, 8), group_depths=(7, 5, 5), delta_scale=0.01, residual=True,
                  output_activation="leaky_relu")  # or "linear" (docs/model.md §21.9)
  c.loss = dict(
      rec=schedules.ramp(warmup=50_000, start=0.01, end=0.1, plateau=100_000),
      latent=1.0,
      latent_eps=0.02,
      vgg=10.0,
      perceptual="dino",  # or "vgg" (needs a vgg section: configs/ablations.py)
      structure_weight=0.8,
      appearance_weight=0.2,
      directional=schedules.ramp(warmup=5_000, start=0.01, end=2.5, plateau=200_000),
      consistency=schedules.ramp(warmup=0, start=0.01, end=1.0, plateau=40_000),
      manipulation_strength=2.0,
      clip_frames=3,
  )
  # lr = batch_size x base_learning_rate (2e-6) as in the original's main.py.
  c.optim = dict(learning_rate=6e-6, dynamics_lr_multiplier=5.0, dynamics_b2=0.999, mapping_b2=0.99, eps=1e-8)
  # max_consecutive_skips: bad (non-finite) steps in a row that stop the run; each one alone is skipped
  c.train = dict(num_steps=200_000, log_every=50, checkpoint_every=2_000, sample_every=1_500, keep_checkpoints=3,
                 max_consecutive_skips=20)
  return c
