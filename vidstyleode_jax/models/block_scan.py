"""A stack of identical blocks run as one `jax.lax.scan`: one traced and compiled copy of the block.

Two ways to store the blocks' parameters:
* `scan_blocks` keeps them under per-block names (`blocks_0`, `blocks_1`, ...), as checkpoints and ported weights of
  the frozen networks name them, and stacks them along a new leading axis at every apply.
* `scan_stacked_blocks` stores them stacked under one name, `<prefix>_stack` (the trainable modulation network and
  mapper): no stacking at apply and no unstacking of their gradients, and one array per kind of parameter for the
  optimizer instead of one per block, which cut the train step's parameter leaves from 685 to 157 and its compile
  time (docs/performance.md §2). `unstack` gives the per-block names back (`<prefix>_0`, `<prefix>_1`, ...).
XLA compiles the block once instead of once per block, and the backward pass runs block by block.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

STACK_SUFFIX = "_stack"


def _carry(result):
  return result[0] if isinstance(result, tuple) else result


def _scan(block: nn.Module, params, x, args, per_block):
  """x <- block(x, *args, *per_block[i]) with params[i], for every i along the leading axis of params."""
  def step(x, inputs):
    block_params, block_inputs = inputs
    result = block.apply({"params": block_params}, x, *args, *block_inputs)
    return _carry(result), result

  return jax.lax.scan(step, x, (params, per_block))


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
  if parent.is_initializing():
    results = []
    for name in names:
      results.append(block.clone(parent=parent, name=name)(x, *args))
      x = _carry(results[-1])
    return x, jax.tree.map(lambda *leaves: jnp.stack(leaves), *results)
  params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[parent.variables["params"][name] for name in names])
  return _scan(block, params, x, args, ())


def scan_stacked_blocks(parent: nn.Module, block: nn.Module, prefix: str, num_blocks: int, x: jax.Array, *args: Any,
                        per_block: Sequence[jax.Array] = ()):
  """Runs num_blocks copies of `block` in sequence, x <- block_i(x, *args, *per_block[i]), their parameters stored
  stacked in `parent`'s param `<prefix>_stack` (each block initialised from its own key).

  Args:
    parent: the calling module, inside its compact method.
    block: the block as an unbound module (built with parent=None); it maps (x, *args, *per_block[i]) to x, or to
      (x, aux).
    prefix: the stack's name, less STACK_SUFFIX.
    num_blocks: how many blocks; 0 returns (x, None).
    x: the input of the first block.
    *args: further inputs, the same for every block.
    per_block: inputs that differ between blocks, each [num_blocks, ...].

  Returns:
    (output x of the last block, every block's result stacked along a new leading axis).
  """
  if not num_blocks:
    return x, None
  per_block = tuple(per_block)

  def init(key):
    one = lambda key, *inputs: block.init(key, x, *args, *inputs)["params"]
    return jax.vmap(one)(jax.random.split(key, num_blocks), *per_block)

  return _scan(block, parent.param(prefix + STACK_SUFFIX, init), x, args, per_block)


def unstack(tree):
  """A param tree with every `<prefix>_stack` [n, ...] replaced by the blocks `<prefix>_0` ... `<prefix>_{n-1}`."""
  if not isinstance(tree, dict):
    return tree
  result = {}
  for name, value in tree.items():
    if name.endswith(STACK_SUFFIX):
      prefix = name[:-len(STACK_SUFFIX)]
      count = len(jax.tree.leaves(value)[0])
      result.update({f"{prefix}_{i}": jax.tree.map(lambda leaf, i=i: leaf[i], value) for i in range(count)})
    else:
      result[name] = unstack(value)
  return result
