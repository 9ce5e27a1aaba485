"""The frozen pretrained networks: StyleGAN2 generator, CLIP and DINO.

Their variables live outside the train state: they are passed to the jitted step as a separate argument, receive
no gradient and no update. `FrozenNetworks` holds the modules and the preprocessing settings and offers the four
functions the model and the losses need.
"""

import dataclasses

import jax
import jax.numpy as jnp

from vidstyleode_jax import ported
from vidstyleode_jax.models import clip as clip_lib
from vidstyleode_jax.models import dino as dino_lib
from vidstyleode_jax.models import stylegan2
from vidstyleode_jax.models import vit
from vidstyleode_jax.models.config_fields import fields_of


@dataclasses.dataclass(frozen=True)
class FrozenNetworks:
  generator: stylegan2.Generator
  clip: clip_lib.CLIP
  dino: vit.VisionTransformer
  clip_image_size: int
  dino_short_side: int
  dino_key_layer: int
  dino_cls_layer: int
  compute_dtype: str = "float32"
  remat_generator: bool = False
  remat_clip: bool = False
  remat_dino: bool = False

  def _cast(self, tree):
    """Floating arrays of `tree` in the compute dtype (a no-op for float32); the stored params stay float32."""
    dtype = jnp.dtype(self.compute_dtype)
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

  def render(self, variables, w_plus):
    """w_plus: [n, n_latent, style_dim] -> images [n, H_G, W_G, 3] float32 in about [-1, 1] (see `per_image`)."""
    generator_vars, w_plus = self._cast((variables["generator"], w_plus))
    images = per_image(lambda w: self.generator.apply(generator_vars, w), w_plus, self.remat_generator)
    return images.astype(jnp.float32)

  def mapping(self, variables, z):
    return self.generator.apply(variables["generator"], z, method=stylegan2.Generator.mapping)

  def clip_image(self, variables, images_m11):
    """images_m11: [n, H, W, 3] in [-1, 1] -> raw CLIP image embeddings [n, embed]."""
    clip_vars = self._cast(variables["clip"])

    def embed(images):
      pixels = self._cast(clip_lib.clip_preprocess(images, self.clip_image_size))
      return self.clip.apply(clip_vars, pixels, method=clip_lib.CLIP.encode_image)

    return per_image(embed, images_m11, self.remat_clip).astype(jnp.float32)

  def clip_text(self, variables, tokens):
    """tokens: [n, context] int32 -> raw CLIP text embeddings [n, embed]."""
    return self.clip.apply(self._cast(variables["clip"]), tokens, method=clip_lib.CLIP.encode_text).astype(jnp.float32)

  def dino_features(self, variables, images01):
    """images01: [n, H, W, 3] in [0, 1] -> dict(self_similarity [n, T, T], cls [n, width])."""
    params, images = self._cast((variables["dino"]["params"], images01))
    descriptors = per_image(
        lambda x: dino_lib.dino_descriptors(self.dino, params, x, self.dino_short_side, self.dino_key_layer,
                                            self.dino_cls_layer), images, self.remat_dino)
    return jax.tree.map(lambda x: x.astype(jnp.float32), descriptors)


def per_image(fn, inputs, remat):
  """fn over a batch, at once or (remat) one input after another with its activations recomputed in the backward.

  With remat, the backward pass of fn recomputes each input's activations instead of storing them: the activations
  of one input are live at a time instead of those of the whole batch (a backward pass would otherwise need all of
  them at once), for a second forward pass and no batching.

  Args:
    fn: maps a batch [n, ...] to a pytree of arrays [n, ...].
    inputs: [n, ...].
    remat: whether to go one input at a time with recomputation.
  """
  if not remat:
    return fn(inputs)
  one = jax.checkpoint(lambda x: jax.tree.map(lambda y: y[0], fn(x[None])))
  return jax.lax.map(one, inputs)


def build(config) -> FrozenNetworks:
  d = config.dino
  return FrozenNetworks(
      generator=stylegan2.Generator(**fields_of(stylegan2.Generator, config.generator)),
      clip=clip_lib.CLIP(**fields_of(clip_lib.CLIP, config.clip)),
      dino=dino_lib.dino_vit(
          patch_size=d.patch_size, width=d.width, depth=d.depth, num_heads=d.num_heads, mlp_dim=4 * d.width,
          pretrained_grid=d.pretrained_grid,
      ),
      clip_image_size=config.clip.image_size,
      dino_short_side=d.short_side,
      dino_key_layer=d.key_layer,
      dino_cls_layer=d.cls_layer,
      compute_dtype=config.frozen_compute_dtype,
      remat_generator=config.generator.remat,
      remat_clip=config.clip.remat,
      remat_dino=d.remat,
  )


def _init_fns(networks: FrozenNetworks, config):
  """Per frozen network: a function key -> its variables (random init at the config's sizes)."""
  g, c, d = config.generator, config.clip, config.dino
  w_plus = jnp.zeros((1, networks.generator.n_latent, g.style_dim))
  image = jnp.zeros((1, c.image_size, c.image_size, 3))
  tokens = jnp.zeros((1, c.context_length), jnp.int32)
  dino_input = jnp.zeros((1, d.short_side, d.short_side, 3))
  return dict(
      generator=lambda key: networks.generator.init(key, w_plus),
      clip=lambda key: networks.clip.init(key, image, tokens),
      dino=lambda key: networks.dino.init(key, dino_input),
  )


PORTED_KINDS = dict(generator=("stylegan2", "stylegan2-ada"), clip=("clip",), dino=("dino",))


def _load_ported(name, module, path, init_fn):
  """Ported variables for one frozen network, checked against the config's module: fields, then every shape."""
  architecture, variables = ported.load(path)
  if architecture.get("kind") not in PORTED_KINDS[name]:
    raise ported.PortedWeightsError(
        f"{name}.checkpoint={path} holds kind {architecture.get('kind')!r}; expected one of {PORTED_KINDS[name]}"
    )
  for field, value in architecture.get("fields", {}).items():
    configured = getattr(module, field, value)
    if (tuple(configured) if isinstance(configured, list) else configured) != (
        tuple(value) if isinstance(value, list) else value):
      raise ported.PortedWeightsError(
          f"{name}.checkpoint={path} was ported with {field}={value!r} but the config builds {field}={configured!r}"
      )
  expected = jax.eval_shape(init_fn, jax.random.key(0))
  variables = {collection: variables[collection] for collection in expected if collection in variables}
  expected_shapes = jax.tree.map(lambda x: x.shape, expected)
  found_shapes = jax.tree.map(lambda x: x.shape, variables)
  if expected_shapes != found_shapes:
    raise ported.PortedWeightsError(
        f"{name}.checkpoint={path}: its variables do not have the shapes the config's {name} needs"
    )
  return variables


def load_or_init(networks: FrozenNetworks, config, key):
  """Frozen variables: ported weights where config.<name>.checkpoint is set, random from `key` otherwise (demo)."""
  init_fns = _init_fns(networks, config)
  modules = dict(generator=networks.generator, clip=networks.clip, dino=networks.dino)
  keys = dict(zip(init_fns, jax.random.split(key, len(init_fns))))
  return {
      name: _load_ported(name, modules[name], config[name].checkpoint, init_fn)
      if config[name].checkpoint else init_fn(keys[name])
      for name, init_fn in init_fns.items()
  }
