"""The memory flags of the frozen networks: bf16 compute stays close to float32, remat changes no value or gradient."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from vidstyleode_jax.models import frozen as frozen_lib


def networks_and_variables():
  config = demo.get_config()
  networks = frozen_lib.build(config)
  return networks, frozen_lib.load_or_init(networks, config, jax.random.key(0))


def test_bfloat16_compute_is_close_to_float32_and_keeps_float32_params():
  networks, variables = networks_and_variables()
  bf16 = dataclasses.replace(networks, compute_dtype="bfloat16")
  w = jax.random.normal(jax.random.key(1), (2, networks.generator.n_latent, 64))
  full, half = networks.render(variables, w), bf16.render(variables, w)
  assert half.dtype == jnp.float32
  error = float(jnp.max(jnp.abs(full - half))) / float(jnp.max(jnp.abs(full)))
  print(f"bf16 render: max abs error {error:.3e} of the largest pixel")
  assert 0 < error < 0.05  # bf16 has an 8-bit mantissa (~4e-3 relative per op)
  images = jnp.tanh(full)
  clip_full, clip_half = networks.clip_image(variables, images), bf16.clip_image(variables, images)
  assert 0 < float(jnp.max(jnp.abs(clip_full - clip_half))) < 0.05 * float(jnp.max(jnp.abs(clip_full)))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))


def sum_sin_grad(networks, variables):
  return jax.jit(jax.grad(lambda w: jnp.sum(jnp.sin(networks.render(variables, w)))))


def test_remat_gives_the_same_images_and_gradient():
  networks, variables = networks_and_variables()
  remat = dataclasses.replace(networks, remat_generator=True)
  w = jax.random.normal(jax.random.key(2), (3, networks.generator.n_latent, 64))
  images = networks.render(variables, w)
  # One image at a time instead of a batch, and recomputed in the backward pass: XLA fuses differently, so float32
  # rounding may differ slightly.
  np.testing.assert_allclose(remat.render(variables, w), images, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(images))))
  expected = sum_sin_grad(networks, variables)(w)
  np.testing.assert_allclose(sum_sin_grad(remat, variables)(w), expected, rtol=0,
                             atol=1e-4 * float(jnp.max(jnp.abs(expected))))


def test_remat_keeps_the_activations_of_one_image():
  """XLA's memory analysis of the gradient: without remat its scratch memory grows with the number of images."""
  networks, variables = networks_and_variables()
  remat = dataclasses.replace(networks, remat_generator=True)

  def temp_bytes(nets, num_images):
    w = jax.ShapeDtypeStruct((num_images, networks.generator.n_latent, 64), jnp.float32)
    return sum_sin_grad(nets, variables).lower(w).compile().memory_analysis().temp_size_in_bytes

  plain_1, plain_16, remat_16 = temp_bytes(networks, 1), temp_bytes(networks, 16), temp_bytes(remat, 16)
  print(dict(plain_1=plain_1, plain_16=plain_16, remat_16=remat_16))
  assert plain_16 > 8 * plain_1
  assert remat_16 < 2 * plain_1


def descriptor_sum(networks, variables, name):
  """A scalar of the CLIP image embeddings or the DINO descriptors of images in [-1, 1], and its gradient."""
  fn = dict(clip=lambda x: networks.clip_image(variables, x),
            dino=lambda x: networks.dino_features(variables, x * 0.5 + 0.5))[name]
  objective = lambda x: sum(jnp.sum(jnp.sin(y)) for y in jax.tree.leaves(fn(x)))
  return jax.jit(lambda x: (fn(x), jax.grad(objective)(x)))


@pytest.mark.parametrize("name", ["clip", "dino"])
def test_per_image_remat_gives_the_same_descriptors_and_gradient(name):
  """One image at a time, recomputed in the backward pass, against the whole batch at once (demo sizes)."""
  networks, variables = networks_and_variables()
  remat = dataclasses.replace(networks, **{f"remat_{name}": True})
  images = jax.random.uniform(jax.random.key(3), (3, 32, 24, 3), minval=-1.0, maxval=1.0)
  expected = descriptor_sum(networks, variables, name)(images)
  actual = descriptor_sum(remat, variables, name)(images)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, e, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(e))))
