"""The frozen pretrained networks: StyleGAN2 generator, CLIP and DINO, and VGG16 for the perceptual-loss ablation.

Their variables live outside the train state: they are passed to the jitted step as a separate argument, receive
no gradient and no update. `FrozenNetworks` holds the modules and the preprocessing settings and offers the
functions the model and the losses need. VGG16 is built only for runs with loss.perceptual = "vgg" (network_names).

Each network's architecture has one owner. With config.<name>.checkpoint set, it is the ported folder's
architecture.json (written by `python -m port_weights` from the checkpoint's shapes), and the config holds only
choices (where the weights are, remat, DINO's layers and input size). Without a checkpoint (the demo), it is the
fields of the config section, and the weights are drawn at random from the seed.
"""

import dataclasses
import inspect
import os

import jax
import jax.numpy as jnp

from vidstyleode_jax import ported
from vidstyleode_jax.errors import UserError
from vidstyleode_jax.models import clip as clip_lib
from vidstyleode_jax.models import dino as dino_lib
from vidstyleode_jax.models import stylegan2
from vidstyleode_jax.models import vgg as vgg_lib
from vidstyleode_jax.models import vit


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
  vgg: vgg_lib.VGG16 | None = None

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

  def vgg_features(self, variables, images01):
    """images01: [n, H, W, 3] in [0, 1] -> [relu1_2, relu2_2, relu3_3, relu4_3] feature maps (models/vgg.py)."""
    features = self.vgg.apply(*self._cast((variables["vgg"], images01)))
    return [x.astype(jnp.float32) for x in features]


# Each frozen network (by its config section): what builds its module from the architecture fields (a Flax module
# class or a factory function), and the ported kinds it accepts.
BUILDERS = dict(generator=stylegan2.Generator, clip=clip_lib.CLIP, dino=dino_lib.dino_vit, vgg=vgg_lib.VGG16)
PORTED_KINDS = dict(generator=("stylegan2", "stylegan2-ada"), clip=("clip",), dino=("dino",), vgg=("vgg",))
ALWAYS = ("generator", "clip", "dino")


def network_names(config):
  """The frozen networks a run uses: always ALWAYS, and VGG16 when config.loss.perceptual is "vgg"."""
  return ALWAYS + (("vgg",) if config.loss.get("perceptual") == "vgg" else ())


def architecture_fields(builder):
  """The names of the architecture fields `builder` takes: a module's dataclass fields, or a function's parameters."""
  if dataclasses.is_dataclass(builder):
    return tuple(f.name for f in dataclasses.fields(builder) if f.name not in ("parent", "name"))
  return tuple(inspect.signature(builder).parameters)


def _same(a, b):
  as_tuple = lambda x: tuple(x) if isinstance(x, (list, tuple)) else x
  return as_tuple(a) == as_tuple(b)


def resolve_architectures(config, architectures=None, names=None):
  """`config` (a copy) with each frozen network's architecture fields taken from its ported folder.

  A network whose config.<name>.checkpoint is set is built as its ported folder's architecture.json says (read
  without the weights); the config may repeat a field, but only with the same value. Networks without a checkpoint
  (the demo) keep the fields of their config section.

  Args:
    config: a run config.
    architectures: optional {name: architecture dict} used instead of reading config.<name>.checkpoint (for
      benchmarks of published checkpoints that are not at hand).
    names: the networks to resolve (default: network_names(config); dataset preparation needs only the generator
      and CLIP).

  Raises:
    UserError: a folder is missing or of the wrong kind, records a field the module does not take, or disagrees
      with a field the config sets; the message names the folder, the field and both values.
  """
  resolved = config.copy_and_resolve_references()
  resolved.unlock()
  names = network_names(config) if names is None else names
  for name in names:
    builder, path = BUILDERS[name], config[name].checkpoint
    if architectures is not None and name in architectures:
      architecture, where = architectures[name], f"the published {name} architecture"
    elif path:
      architecture, where = ported.read_architecture(path), os.path.join(path, ported.ARCHITECTURE_FILE)
    else:
      continue
    if architecture.get("kind") not in PORTED_KINDS[name]:
      raise UserError(f"{name}.checkpoint={path} holds ported weights of kind {architecture.get('kind')!r}; "
                      f"expected one of {PORTED_KINDS[name]}")
    known = architecture_fields(builder)
    unknown = sorted(set(architecture["fields"]) - set(known))
    if unknown:
      raise UserError(f"{where} records field(s) {unknown} that {builder.__name__} does not take (it takes "
                      f"{list(known)}): the folder was written by another version of port_weights")
    section = resolved[name]
    for field, value in architecture["fields"].items():
      if field in section and not _same(section[field], value):
        raise UserError(f"{name}.{field}={section[field]!r} in the config, but {where} has {field}={value!r}: a "
                        f"ported network's architecture comes from its folder, so drop {name}.{field} from the "
                        "config or port the checkpoint you mean")
      section[field] = tuple(value) if isinstance(value, list) else value
  for name in names:
    required = [p.name for p in inspect.signature(BUILDERS[name]).parameters.values()
                if p.default is inspect.Parameter.empty and p.name not in resolved[name]]
    if required:
      raise UserError(f"config section {name} has no {', '.join(required)}: set {name}.checkpoint to a ported "
                      "folder (its architecture.json has them) or set these fields")
  return resolved


def network(name, config):
  """The Flax module of frozen network `name`, built from config.<name>'s architecture fields."""
  builder, section = BUILDERS[name], config[name]
  return builder(**{field: tuple(section[field]) if isinstance(section[field], list) else section[field]
                    for field in architecture_fields(builder) if field in section})


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
  """The frozen networks of a config whose architectures are resolved (`resolve_architectures`)."""
  return FrozenNetworks(
      generator=network("generator", config),
      clip=network("clip", config),
      dino=network("dino", config),
      clip_image_size=config.clip.image_size,
      dino_short_side=config.dino.short_side,
      dino_key_layer=config.dino.key_layer,
      dino_cls_layer=config.dino.cls_layer,
      compute_dtype=config.frozen_compute_dtype,
      remat_generator=config.generator.remat,
      remat_clip=config.clip.remat,
      remat_dino=config.dino.remat,
      vgg=network("vgg", config) if "vgg" in network_names(config) else None,
  )


# On the demo config, a randomly initialised generator's images have a standard deviation of 2.0, so that 49% of the
# pixels fall outside [-1, 1]: the demo frames (stored as uint8) clip them, and G(exact inversion) misses its own
# frame by an MSE of 1.9, 17 times the frames' temporal variance. Scaled by this gain (held-out sinusoid videos): std
# 0.25, 0.3% of the pixels outside, an MSE of 0.0001 against a temporal variance of 0.012. A gain of 0.25 still left
# 6% outside and an MSE of 0.012 against 0.035, enough to keep a W+ probe from learning motion (docs/model.md §21.9).
# Ported generators are unchanged.
RANDOM_TO_RGB_GAIN = 0.125


def random_generator_variables(generator, key, w_plus):
  """generator.init(key, w_plus), the to-RGB kernels scaled by RANDOM_TO_RGB_GAIN (images within about [-1, 1])."""
  variables = generator.init(key, w_plus)
  params = dict(variables["params"])
  for name, layer in params.items():
    if name.startswith("to_rgb"):
      params[name] = {**layer, "conv": {**layer["conv"], "kernel": layer["conv"]["kernel"] * RANDOM_TO_RGB_GAIN}}
  return {**variables, "params": params}


def _init_fns(networks: FrozenNetworks):
  """Per frozen network: a function key -> its variables (random init at the modules' sizes)."""
  w_plus = jnp.zeros((1, networks.generator.n_latent, networks.generator.style_dim))
  image = jnp.zeros((1, networks.clip_image_size, networks.clip_image_size, 3))
  tokens = jnp.zeros((1, networks.clip.context_length), jnp.int32)
  dino_input = jnp.zeros((1, networks.dino_short_side, networks.dino_short_side, 3))
  fns = dict(
      generator=lambda key: random_generator_variables(networks.generator, key, w_plus),
      clip=lambda key: networks.clip.init(key, image, tokens),
      dino=lambda key: networks.dino.init(key, dino_input),
  )
  if networks.vgg is not None:
    fns["vgg"] = lambda key: networks.vgg.init(key, jnp.zeros((1, 16, 16, 3)))
  return fns


def _load_ported(name, path, init_fn):
  """Ported variables for one frozen network, every array checked against the module's shapes."""
  _, variables = ported.load(path)
  expected = jax.eval_shape(init_fn, jax.random.key(0))
  missing = sorted(set(expected) - set(variables))
  if missing:
    raise UserError(f"{name}.checkpoint={path}: {ported.VARIABLES_FILE} lacks the variable collection(s) {missing}")
  variables = {collection: variables[collection] for collection in expected}
  problems = ported.variable_problems(variables, expected)
  if problems:
    raise UserError(f"{name}.checkpoint={path}: {problems[0]}" + (f" (and {len(problems) - 1} more problem(s))"
                                                                  if len(problems) > 1 else ""))
  return variables


def load_or_init(networks: FrozenNetworks, config, key):
  """Frozen variables: ported weights where config.<name>.checkpoint is set, random from `key` otherwise (demo)."""
  init_fns = _init_fns(networks)
  keys = dict(zip(ALWAYS, jax.random.split(key, len(ALWAYS))), vgg=jax.random.fold_in(key, len(ALWAYS)))
  return {
      name: _load_ported(name, config[name].checkpoint, init_fn) if config[name].checkpoint else init_fn(keys[name])
      for name, init_fn in init_fns.items()
  }
