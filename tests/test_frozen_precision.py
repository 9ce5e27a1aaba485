"""The memory flags of the frozen networks: bf16 compute stays close to float32, remat changes no gradient."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

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


def test_remat_gives_the_same_gradient():
  networks, variables = networks_and_variables()
  remat = dataclasses.replace(networks, remat_generator=True)
  w = jax.random.normal(jax.random.key(2), (2, networks.generator.n_latent, 64))
  grad = lambda nets: jax.jit(jax.grad(lambda w: jnp.sum(jnp.sin(nets.render(variables, w)))))(w)
  expected = grad(networks)
  # Recomputing in the backward pass lets XLA fuse differently, so float32 rounding may differ slightly.
  np.testing.assert_allclose(grad(remat), expected, rtol=0, atol=1e-4 * float(jnp.max(jnp.abs(expected))))
