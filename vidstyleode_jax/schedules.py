"""Loss-weight schedules: a delayed linear ramp-up (docs/model.md §12).

A weight is either a plain float (constant) or a ConfigDict with fields warmup, start, end, plateau:
  λ(n) = 0                                                  if n < warmup
  λ(n) = start + min((n - warmup) / (plateau - warmup), 1) * (end - start)   otherwise.
"""

import jax.numpy as jnp
import ml_collections

RAMP_FIELDS = ("warmup", "start", "end", "plateau")


def ramp(warmup: int, start: float, end: float, plateau: int) -> ml_collections.ConfigDict:
  """A ramp as a config value; plateau must exceed warmup."""
  return ml_collections.ConfigDict(dict(warmup=warmup, start=start, end=end, plateau=plateau))


def validate(name: str, weight) -> None:
  """Raises ValueError with the config field name if `weight` is neither a float nor a well-formed ramp."""
  if isinstance(weight, (int, float)):
    return
  missing = [f for f in RAMP_FIELDS if f not in weight]
  if missing:
    raise ValueError(f"config.{name}: ramp is missing fields {missing}; expected a float or {RAMP_FIELDS}")
  if weight.plateau <= weight.warmup:
    raise ValueError(f"config.{name}: plateau ({weight.plateau}) must be greater than warmup ({weight.warmup})")


def weight_at(weight, step) -> jnp.ndarray:
  """The value of a constant or ramped loss weight at `step` (a traced int is fine)."""
  if isinstance(weight, (int, float)):
    return jnp.asarray(weight, jnp.float32)
  step = jnp.asarray(step, jnp.float32)
  progress = jnp.clip((step - weight.warmup) / (weight.plateau - weight.warmup), 0.0, 1.0)
  value = weight.start + progress * (weight.end - weight.start)
  return jnp.where(step < weight.warmup, 0.0, value).astype(jnp.float32)
