"""The ablations of the paper's Tables 3, 4 and 6, and the second-order latent ODE, as named config variants.

  python -m vidstyleode_jax.train --config=configs/ablations.py:lstm --workdir=runs/ablations/lstm
  python -m vidstyleode_jax.train --config=configs/ablations.py:fashion/lstm --workdir=...  # on the paper's setting

The text after ':' is VARIANT or BASE/VARIANT, BASE one of demo (default), windows (configs/demo.py:windows, the
demo on windows of consecutive frames), fashion, ravdess. Every variant is its
base config with the fields of VARIANTS changed; `python -m vidstyleode_jax.ablations` trains them all on the demo
data and writes one comparison table (docs/model.md §21, README "Ablations").

Not reproduced: the rows of Table 3 that add a temporal discriminator (StyleGAN-V's "SD", MoCoGAN-HD's "MD"), which
need adversarial training.
"""

from vidstyleode_jax import config_files

# base -> (config file, its argument)
BASES = {"demo": ("demo", ""), "windows": ("demo", "windows"), "fashion": ("fashion", ""),
         "ravdess": ("ravdess", "")}
NO_CONSISTENCY = {"loss.consistency": 0.0}
VGG_PERCEPTUAL = {"loss.perceptual": "vgg"}
# Faster motion than the demo's: the solves get more room than its 64 steps (a failed solve stops learning).
PERIODIC = {"data.motion": "periodic", "dynamics.max_steps": 256}
# name -> (the paper's row, the fields it changes).
VARIANTS = {
    "full": ("Tables 3 and 4: VidStyleODE; Table 6: mean content", {}),
    "no_consistency": ("Table 3: w/o L_C", NO_CONSISTENCY),
    "no_consistency_no_residual": ("Table 3: w/o L_C, latent residuals", {**NO_CONSISTENCY, "mapper.residual": False}),
    "vgg_no_consistency": ("Table 3: w/o L_A, L_S and L_C (VGG perceptual loss instead)",
                           {**NO_CONSISTENCY, **VGG_PERCEPTUAL}),
    "lstm": ("Table 4: w/o ODE (w/ LSTM)", {"dynamics.kind": "lstm"}),
    "no_self_attention": ("Table 4: w/o Self-Attn", {"modulation.self_attention": False}),
    "concat": ("Table 4: w/o Cross-Attn (w/ Concat)", {"modulation.fusion": "concat"}),
    "content_first": ("Table 6: first-frame content", {"model.content": "first"}),
    "content_random": ("Table 6: random-frame content", {"model.content": "random"}),
    "ode2": ("second-order latent ODE (paper §6, future work)", {"dynamics.kind": "ode2"}),
    "periodic_ode": ("periodic demo motion, first-order ODE", PERIODIC),
    "periodic_ode2": ("periodic demo motion, second-order ODE", {**PERIODIC, "dynamics.kind": "ode2"}),
}
# The frozen VGG16 of the perceptual loss, per base config file: random and narrow on the demo, torchvision's
# ImageNet weights otherwise (`python -m port_weights vgg vgg16-397923af.pth ported/vgg16`, docs/weight_formats.md §9).
VGG_SECTIONS = {
    "demo": dict(checkpoint="", widths=(8, 16, 32, 32)),
    "fashion": dict(checkpoint="ported/vgg16"),
    "ravdess": dict(checkpoint="ported/vgg16"),
}


def get_config(arg="full"):
  base, _, variant = arg.rpartition("/")
  base = base or "demo"
  if base not in BASES:
    raise ValueError(f"configs/ablations.py:{arg}: base {base!r} must be one of {tuple(BASES)}")
  if variant not in VARIANTS:
    raise ValueError(f"configs/ablations.py:{arg}: variant {variant!r} must be one of {sorted(VARIANTS)}")
  _, fields = VARIANTS[variant]
  config_file, config_arg = BASES[base]
  base_module = config_files.sibling(__file__, config_file)
  config = base_module.get_config(config_arg) if config_arg else base_module.get_config()
  if config.data.kind != "synthetic" and "data.motion" in fields:
    raise ValueError(f"configs/ablations.py:{arg}: the periodic variants need the demo's synthetic data")
  if fields.get("loss.perceptual") == "vgg":
    config.vgg = VGG_SECTIONS[config_file]
  return config_files.set_fields(config, fields)
