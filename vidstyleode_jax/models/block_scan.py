"""A stack of identical blocks run as one `jax.lax.scan`, their parameters kept under per-block names.

Checkpoints and ported weights name a transformer's blocks one by one (`blocks_0`, `blocks_1`, ...); Flax's `nn.scan`
would store them stacked under one name instead. `scan_blocks` keeps the names: at init it creates and runs the
blocks one after another, at apply it stacks their parameters along a new leading axis and runs one traced copy of
the block in a scan. XLA then compiles the block once instead of once per block, and the backward pass runs block by
block (unrolled, XLA:CPU fuses the residual stream's gradient across all blocks into loops that recompute it).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def scan_blocks(parent: nn.Module, block: nn.Module, names: Sequence[str], x: jax.Array, *args: Any):
  """Runs the blocks `names` of `parent` in sequence: x <- block_i(x, *args).

  Args:
    parent: the calling module, inside its compact method; the blocks are its submodules `names`.
    block: the block as an unbound module (built with parent=None); it maps (x, *args) to x, or to (x, aux).
    names: the blocks' names, in order.
    x: the input of the first block.
    *args: further inputs, the same for every block.

  Returns:
    (output x of the last block, every block's result stacked along a new leading axis: its x, or its (x, aux)); for
    no names, (x, None).
  """
  if not names:
    return x, None
  carry = lambda result: result[0] if isinstance(result, tuple) else result
  if parent.is_initializing():
    results = []
    for name in names:
      results.append(block.clone(parent=parent, name=name)(x, *args))
      x = carry(results[-1])
    return x, jax.tree.map(lambda *leaves: jnp.stack(leaves), *results)

  def step(x, params):
    result = block.apply({"params": params}, x, *args)
    return carry(result), result

  params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[parent.variables["params"][name] for name in names])
  return jax.lax.scan(step, x, params)
