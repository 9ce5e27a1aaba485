"""The official VidStyleODE modules' trainable path, for `bench --part=trainable --compare_official=DIR` only.

`torch_trainable.py` rewrites the original's trainable path from its description; this module times the original
itself. Nothing of the official repository is part of this project: its modules are imported at run time from the
user's clone of github.com/MoayedHajiAli/VidStyleODE-official (DIR), and built with the constructor arguments of
its configs/fashion/base.yaml, derived from our config's fields so that both sides have the same parameter count.
The path is the one `torch_trainable.TrainablePath` computes: the video encoder's ResNet and backward ODE-ConvGRU
(float64), the Dopri5 solve at the decoded times (torchdiffeq), the modulation network once per style token and
the mapper, forward + backward + two Adam groups.

Three shims let the modules run on a CPU with current packages; none changes their arithmetic:
* their fused leaky ReLU moves its input to CUDA (`input.cuda()`): while a program runs, `torch.Tensor.cuda`
  returns the tensor itself;
* their mapper's module imports OpenAI's `clip` package, which the mapper does not call: an empty module stands
  in when it is not installed;
* their modulation network's module imports `top_k_top_p_filtering` from transformers, which newer releases
  dropped and the modulation network does not call: the name is set to None when it is missing.
They also need torchdiffeq and omegaconf (`pip install torchdiffeq omegaconf`). Training and inference never import
this module.
"""

import contextlib
import importlib.util
import os
import sys
import types

import numpy as np

from vidstyleode_jax.errors import UserError

REPOSITORY = "https://github.com/MoayedHajiAli/VidStyleODE-official"
MODULE_FILES = ("src/modules/video_encoder.py", "src/modules/minigpt.py", "src/modules/mapper.py")
# configs/fashion/base.yaml of the official repository: the mapper's modulation shapes, one per W+ group.
FASHION_MOD_SHAPE = [[1, 4, 1], [1, 4, 1], [1, 10, 1]]


@contextlib.contextmanager
def _tensors_stay_on_cpu(torch):
  cuda = torch.Tensor.cuda
  torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor
  try:
    yield
  finally:
    torch.Tensor.cuda = cuda


def check_clone(repo_dir):
  """Raises UserError unless repo_dir holds the official modules this path imports."""
  missing = [name for name in MODULE_FILES if not os.path.isfile(os.path.join(repo_dir, name))]
  if missing:
    raise UserError(f"--compare_official={repo_dir}: {', '.join(missing)} not found; expected a clone of "
                    f"{REPOSITORY}")


def _import_modules(repo_dir):
  """The official VideoEncoderWLatentODE, CrossAttentionModulation and AttentionAttributeMapper classes."""
  check_clone(repo_dir)
  try:
    import transformers.generation.utils as generation_utils  # pylint: disable=g-import-not-at-top
    if not hasattr(generation_utils, "top_k_top_p_filtering"):
      generation_utils.top_k_top_p_filtering = None
    if importlib.util.find_spec("clip") is None:
      sys.modules.setdefault("clip", types.ModuleType("clip"))
    sys.path.insert(0, os.path.abspath(repo_dir))
    from src.modules import mapper, minigpt, video_encoder  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError as e:
    raise UserError(f"--compare_official: the official modules need {e.name} (pip install torchdiffeq omegaconf)"
                    ) from None
  finally:
    if sys.path and sys.path[0] == os.path.abspath(repo_dir):
      sys.path.pop(0)
  return video_encoder.VideoEncoderWLatentODE, minigpt.CrossAttentionModulation, mapper.AttentionAttributeMapper


def build(repo_dir, config):
  """The official encoder, modulation network and mapper with the sizes of `config` (a fashion-like config)."""
  encoder_class, modulation_class, mapper_class = _import_modules(repo_dir)
  dyn, mod, mapper = config.dynamics, config.modulation, config.mapper
  encoder = encoder_class(img_size=[dyn.height, dyn.width], dynamic_latent_out_dim=mod.width,
                          spatial_code_ch=dyn.spatial_channels, netE_num_downsampling_sp=dyn.num_downsamples)
  modulation = modulation_class(out_dim=mod.width, n_embd=mod.width, n_layer=mod.num_cross_layers,
                                content_block_size=1, dyn_attn_n_layer=mod.num_self_layers,
                                dyn_block_size=mod.num_dynamics_tokens, n_head=mod.num_heads,
                                shared_attn_params=False)
  first_group_only = [True, False, False]
  mapper_module = mapper_class(use_coarse_mapper=first_group_only, use_medium_mapper=first_group_only,
                               use_fine_mapper=first_group_only, coarse_cut_flag=False, medium_cut_flag=False,
                               fine_cut_flag=False, attr_vec_dims=[mod.width, 0, 0], mod_shape=FASHION_MOD_SHAPE,
                               num_of_layers=list(mapper.group_depths), predict_delta=True,
                               inversion_layer_num=list(mapper.group_sizes))
  return encoder, modulation, mapper_module


def programs(repo_dir, config, inputs):
  """The official trainable path on `inputs` (bench.trainable_inputs): ({name: closure returning (W+ or None, the
  latent ODE's function evaluations)}, parameter count)."""
  import torch  # pylint: disable=g-import-not-at-top
  encoder, modulation, mapper = build(repo_dir, config)
  o = config.optim
  optimizer = torch.optim.Adam([
      dict(params=encoder.parameters(), lr=o.learning_rate * o.dynamics_lr_multiplier, betas=(0.9, o.dynamics_b2)),
      dict(params=list(modulation.parameters()) + list(mapper.parameters()), lr=o.learning_rate,
           betas=(0.9, o.mapping_b2)),
  ], eps=o.eps)
  tensor = lambda name: torch.from_numpy(np.array(inputs[name]))
  frames = tensor("frames").permute(0, 1, 4, 2, 3).contiguous()  # [B, T, C, H, W] as the official encoder reads
  times, query_times = tensor("times").double(), tensor("query_times").double()
  batch, num_frames = frames.shape[:2]
  num_decoded = query_times.shape[0]
  time_major = lambda x: x.unsqueeze(0).repeat(num_decoded, *([1] * x.ndim)).reshape(num_decoded * batch,
                                                                                      *x.shape[1:])
  content = time_major(tensor("content"))
  styles = [time_major(torch.from_numpy(np.array(style))).unsqueeze(1) for style in inputs["styles"]]
  mask = torch.ones(num_frames, 1)
  evaluations = [0]  # calls of the decoding ODE's vector field, step-size selection included
  encoder.diffeq_solver.ode_func.register_forward_hook(lambda *_: evaluations.__setitem__(0, evaluations[0] + 1))

  def path():
    evaluations[0] = 0
    with _tensors_stay_on_cpu(torch):
      states = encoder.solve_ode(encoder.video_dynamics(frames, times, mask), query_times)
      tokens = states.permute(0, 2, 3, 1).reshape(num_decoded * batch, -1, states.shape[1])
      return torch.stack([content + config.mapper.delta_scale * mapper(content, modulation(style, tokens))
                          for style in styles])

  def forward():
    with torch.no_grad():
      return path().numpy(), evaluations[0]

  def step():
    optimizer.zero_grad()
    torch.mean(torch.square(path())).backward()
    optimizer.step()
    return None, evaluations[0]

  count = sum(p.numel() for module in (encoder, modulation, mapper) for p in module.parameters())
  return {"forward": forward, "forward+backward+adam": step}, count
