"""One training step: forward through both branches, all losses, and the update, as one jitted XLA program.

docs/model.md §9-§13. The batch (see data/pipeline.py) holds uint8 frames [B, T, H, W, 3], their W+ inversions,
token ids of each video's description and the clip's normalised times. Per-step randomness (which N frames are
decoded, the observation mask, the frames of the CLIP losses) comes from jax.random keyed by (seed, step), so a
step does not depend on how many devices run it, and a resumed run repeats it exactly.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vidstyleode_jax import backends
from vidstyleode_jax import inference
from vidstyleode_jax import losses
from vidstyleode_jax import parallel
from vidstyleode_jax import schedules
from vidstyleode_jax.models import dynamics as dynamics_lib

DYNAMICS, MAPPING = "dynamics", "mapping"
CONTENT_KEY = 1  # folded into a step's forward key to draw the frame of a "random" content code


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  opt_state: optax.OptState


def make_optimizer(config):
  """Two Adam groups: the dynamics encoder (lr x dynamics_lr_multiplier), modulation + mapper (docs/model.md §13)."""
  o = config.optim
  groups = {
      DYNAMICS: optax.adam(o.learning_rate * o.dynamics_lr_multiplier, b1=0.9, b2=o.dynamics_b2, eps=o.eps),
      MAPPING: optax.adam(o.learning_rate, b1=0.9, b2=o.mapping_b2, eps=o.eps),
  }
  label = lambda params: {
      "params": {name: DYNAMICS if name == "dynamics" else MAPPING for name in params["params"]}
  }
  return optax.multi_transform(groups, label)


def init_state(nets, config, key, example_batch):
  """Initialises the trainable params from an example batch (shapes only matter) and the optimizer state.

  One jitted program: run op by op, the init dispatches hundreds of small programs, too small for the persistent
  compilation cache, so that every process compiled them anew (about 30 s of a trainer's start on CPU). On the demo
  config the jitted init gave every one of the state's 726 arrays bit for bit as the op-by-op init did.
  """
  @jax.jit  # no compiler_options: apps/trained_run.py traces this under jax.eval_shape, where a jit is nested
  def init(key, frames, wplus, times):
    frames01 = frames.astype(jnp.float32) / 255.0
    content = inference.content_code(config, wplus)
    style = jnp.zeros((frames01.shape[0], config.modulation.width))
    mask = jnp.ones(frames01.shape[:2])
    params = nets.model.init(
        key, inference.dynamics_input(nets, frames01), times, mask, times[: config.data.frames_decoded], content,
        (style,),
    )
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=make_optimizer(config).init(params))

  return init(key, example_batch["frames"], example_batch["wplus"], example_batch["times"][0])


def sample_frame_indices(key, num_frames, num_decoded):
  """Frame 0 plus num_decoded - 1 distinct later frames of the clip, sorted: [num_decoded] int32."""
  later = jax.random.choice(key, jnp.arange(1, num_frames), (num_decoded - 1,), replace=False)
  return jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.sort(later).astype(jnp.int32)])


def branch_latents(nets, params, frozen_vars, batch, key):
  """The forward pass up to the W+ latents of both branches.

  Returns a dict: w_rec, w_edit [B, N, n_latent, style_dim]; content [B, n_latent, style_dim]; reference G(z_C);
  frame_indices [N]; text and text_rolled [B, embed]; solver stats.
  """
  config = nets.config
  frames01 = batch["frames"].astype(jnp.float32) / 255.0
  times = batch["times"][0]
  batch_size, num_frames = frames01.shape[:2]
  k_frames, k_mask = jax.random.split(key)
  frame_indices = sample_frame_indices(k_frames, num_frames, config.data.frames_decoded)

  content = inference.content_code(config, batch["wplus"], jax.random.fold_in(key, CONTENT_KEY))
  style, reference = inference.style_token(nets, frozen_vars, content)
  text = nets.frozen.clip_text(frozen_vars, batch["tokens"])
  text_rolled = jnp.roll(text, 1, axis=0)
  edit_style = style + config.loss.manipulation_strength * (text_rolled - text)

  mask = dynamics_lib.observation_mask(
      config.dynamics.mask_mode, batch_size, num_frames, k_mask, config.dynamics.mask_num_hidden
  )
  w, _, stats = nets.model.apply(
      params, inference.dynamics_input(nets, frames01), times, mask, times[frame_indices], content,
      (style, edit_style),
  )
  return dict(
      w_rec=w[0], w_edit=w[1], content=content, reference=reference, frame_indices=frame_indices, text=text,
      text_rolled=text_rolled, stats=stats,
  )


def gated_total(weights, groups):
  """The weighted sum of loss terms, each group of terms computed only when one of its weights is positive.

  A group runs under `jax.lax.cond`, so while its scheduled weights are 0 (a ramp not started yet) XLA runs neither
  its forward nor its backward pass; `jnp.where` would compute the terms and their gradients and discard them.

  Args:
    weights: {term name: scalar weight >= 0}.
    groups: {tuple of term names: function () -> {term name: scalar}}, the names covering `weights`.

  Returns:
    (total, {term name: value}), a term not computed reading 0.
  """
  terms = {}
  for names, compute in groups.items():
    active = jnp.any(jnp.stack([weights[name] > 0 for name in names]))
    skipped = lambda compute=compute: jax.tree.map(jnp.zeros_like, jax.eval_shape(compute))
    terms.update(jax.lax.cond(active, compute, skipped))
  total = sum(jnp.where(weights[name] > 0, weights[name] * terms[name], 0.0) for name in weights)
  return total, terms


def loss_and_metrics(nets, params, frozen_vars, batch, step, key):
  """The weighted total loss (docs/model.md §10.7) and a dict of scalar metrics.

  Terms whose scheduled weight is 0 at `step` are not computed (see `gated_total`) and are logged as 0.
  With loss.perceptual = "vgg" (paper Table 3, docs/model.md §21.5) a VGG16 perceptual loss between the
  reconstruction and the real frames, weighted by loss.vgg, replaces the DINO structure and appearance losses.
  """
  lc = nets.config.loss
  k_forward, k_directional, k_consistency_rec, k_consistency_edit = jax.random.split(key, 4)
  out = branch_latents(nets, params, frozen_vars, batch, k_forward)
  batch_size, num_decoded = out["w_rec"].shape[:2]

  full, data_size = inference.render_frames(nets, frozen_vars, jnp.stack([out["w_rec"], out["w_edit"]]))
  real_m11 = batch["frames"][:, out["frame_indices"]].astype(jnp.float32) / 127.5 - 1.0
  rec_m11, edit_m11 = data_size[0], data_size[1]

  flat = lambda x: x.reshape((-1,) + x.shape[-3:])
  n = batch_size * num_decoded
  dino = lambda images_m11: nets.frozen.dino_features(frozen_vars, images_m11 * 0.5 + 0.5)
  clip_image = lambda images: nets.frozen.clip_image(frozen_vars, images)
  num_clip = min(lc.clip_frames, num_decoded)
  positions = lambda k: jax.random.choice(k, num_decoded, (num_clip,), replace=False)

  def dino_terms():
    # Generated frames (reconstruction, then edited) and real ones in separate calls: no backward for the real ones.
    generated, real = dino(flat(data_size)), dino(flat(real_m11))
    return dict(
        structure=losses.structure_loss(generated["self_similarity"], jnp.tile(real["self_similarity"], (2, 1, 1))),
        appearance=losses.appearance_loss(generated["cls"][:n], dino(out["reference"])["cls"], num_decoded),
    )

  def vgg_terms():
    features = nets.frozen.vgg_features(frozen_vars, jnp.concatenate([flat(rec_m11), flat(real_m11)]) * 0.5 + 0.5)
    return dict(perceptual=losses.perceptual_loss([f[:n] for f in features], [f[n:] for f in features]))

  vgg_weight = schedules.weight_at(lc.vgg, step)
  if lc.perceptual == "vgg":
    perceptual_groups = {("perceptual",): vgg_terms}
    perceptual_weights = dict(perceptual=vgg_weight)
  else:
    perceptual_groups = {("structure", "appearance"): dino_terms}
    perceptual_weights = dict(structure=vgg_weight * lc.structure_weight,
                              appearance=vgg_weight * lc.appearance_weight)

  groups = {
      ("rec",): lambda: dict(rec=losses.mse(rec_m11, real_m11)),
      ("latent",): lambda: dict(latent=losses.latent_hinge(out["content"], out["w_rec"], out["w_edit"], lc.latent_eps)),
      **perceptual_groups,
      ("directional",): lambda: dict(directional=losses.directional_clip_loss(
          clip_image, real_m11, edit_m11, out["text"], out["text_rolled"], positions(k_directional))),
      ("consistency",): lambda: dict(
          consistency=losses.consistency_clip_loss(clip_image, full[0], positions(k_consistency_rec))
          + losses.consistency_clip_loss(clip_image, full[1], positions(k_consistency_edit))),
  }
  weights = dict(
      rec=schedules.weight_at(lc.rec, step),
      latent=schedules.weight_at(lc.latent, step),
      **perceptual_weights,
      directional=schedules.weight_at(lc.directional, step),
      consistency=schedules.weight_at(lc.consistency, step),
  )
  total, terms = gated_total(weights, groups)
  metrics = {f"loss/{name}": value for name, value in terms.items()}
  metrics.update({f"weight/{name}": value for name, value in weights.items()})
  metrics.update({
      "loss/total": total,
      "ode/nfe": out["stats"]["nfe"].astype(jnp.float32),
      "ode/failed": 1.0 - out["stats"]["solve_ok"].astype(jnp.float32),
      "latent/delta_rms": jnp.sqrt(jnp.mean(jnp.square(out["w_rec"] - out["content"][:, None]))),
  })
  return total, metrics


def step_key(config, step):
  return jax.random.fold_in(jax.random.key(config.seed), step)


def make_train_step(nets, mesh):
  """-> jitted (state, frozen_vars, batch) -> (state, metrics); the state is donated, the batch sharded on 'data'.

  The non-finite guard: a bad step, one whose loss or gradient norm is a NaN or an infinity, or whose latent ODE
  solve failed, keeps the params and the optimizer state as they were; the step counter still advances, so the data
  order is that of a run without the bad step. metrics["train/skipped"] is 1.0 for a bad step, else 0.0
  (bad_step_reason names what went bad). A finite global gradient norm bounds every gradient and its square, so
  Adam's moments and update stay finite from a finite state; the guard does not scan the new params and moments
  themselves, a reduction over every leaf that multiplied the fashion step's compile time more than tenfold
  (docs/performance.md §2).

  metrics["train/stop_vote"] is the maximum of the batch's "stop_votes" ([batch] float32, each process's rows 1.0
  when it was asked to stop): every process reads the same vote, which travels with the step's own reduction of
  the gradients (train.py stops all processes at the same step with it).
  """
  optimizer = make_optimizer(nets.config)

  def train_step(state, frozen_vars, batch):
    grad_fn = jax.value_and_grad(
        lambda p: loss_and_metrics(nets, p, frozen_vars, batch, state.step, step_key(nets.config, state.step)),
        has_aux=True,
    )
    (loss, metrics), grads = grad_fn(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    good = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"]) & (metrics["ode/failed"] == 0)
    metrics["train/skipped"] = 1.0 - good.astype(jnp.float32)
    metrics["train/stop_vote"] = jnp.max(batch["stop_votes"])
    params, opt_state = jax.lax.cond(good, lambda: (params, opt_state), lambda: (state.params, state.opt_state))
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics

  replicated = parallel.replicated(mesh)
  return jax.jit(
      train_step,
      in_shardings=(replicated, replicated, parallel.batch_sharding(mesh)),
      out_shardings=(replicated, replicated),
      donate_argnums=(0,),
      compiler_options=backends.compiler_options(),
  )


def bad_step_reason(metrics):
  """What made a skipped step bad, from its metrics (host numbers): e.g. "loss/total=nan (loss/structure=nan)"."""
  values = {name: float(value) for name, value in metrics.items()}
  bad_losses = [f"{name}={value}" for name, value in sorted(values.items())
                if name.startswith("loss/") and name != "loss/total" and not np.isfinite(value)]
  reasons = []
  if not np.isfinite(values["loss/total"]):
    reasons.append(f"loss/total={values['loss/total']}" + (f" ({', '.join(bad_losses)})" if bad_losses else ""))
  if not np.isfinite(values["grad_norm"]):
    reasons.append(f"grad_norm={values['grad_norm']}")
  if values["ode/failed"] > 0:
    reasons.append("ode/failed=1 (the latent ODE solve did not finish within dynamics.max_steps)")
  return "; ".join(reasons)
