"""What the project chooses per XLA backend: compiler options for its jitted programs.

Pass `compiler_options()` to every `jax.jit` of a training or inference program.
"""

import jax


def compiler_options(backend: str | None = None) -> dict[str, str]:
  """XLA compiler options for `backend` (default: JAX's default backend)."""
  del backend
  return {}
