"""Devices, the mesh and shardings: the only module that knows about devices and processes.

Data parallelism is `jax.jit` over a one-axis `Mesh` named "data": batches are sharded along their leading axis,
parameters and optimizer state are replicated. The same code runs on one device, on N local devices, and on a
multi-host pod, where each process loads only its own rows of the global batch.
"""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed():
  """Joins a multi-process run when the environment describes one; a no-op for a single process.

  Recognised: JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES + JAX_PROCESS_ID, or a cluster JAX detects by
  itself (Cloud TPU pods, SLURM) when VIDSTYLEODE_DISTRIBUTED=1.
  """
  if "JAX_COORDINATOR_ADDRESS" in os.environ:
    jax.distributed.initialize(
        coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]),
    )
  elif os.environ.get("VIDSTYLEODE_DISTRIBUTED") == "1":
    jax.distributed.initialize()


def create_mesh(devices=None):
  """A one-axis mesh over `devices` (default: every device of every process)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def batch_sharding(mesh):
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh):
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size, mesh):
  if batch_size % mesh.size:
    raise ValueError(f"config.data.batch_size={batch_size} is not divisible by the {mesh.size} devices")


def global_batch(local_batch, mesh):
  """Host-local numpy arrays (this process's rows) -> global arrays sharded over the data axis."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def replicate(tree, mesh):
  """Places a pytree (parameters, optimizer state) on every device."""
  return jax.device_put(tree, replicated(mesh))


def is_main_process():
  return jax.process_index() == 0
