"""Data parallelism: a device mesh for `jax.jit` (the default) and a `pmap` path.

The jit path shards every batch on the mesh's `data` axis and replicates the train state; the
shardings come from `state_sharding` / `batch_sharding`, so adding a model axis later means
changing those two functions, not the step. The pmap path runs the same step function per device
with `axis_name='data'`, where the step sums gradients with `lax.psum`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
  """A 1-D mesh over all devices (of every process) named `data`."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def state_sharding(mesh: Mesh, state: Any) -> Any:
  """Replicated parameters and optimizer state (a model axis would shard some leaves here)."""
  return jax.tree.map(lambda _: NamedSharding(mesh, P()), state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows of a batch split over the `data` axis."""
  return NamedSharding(mesh, P(AXIS))


def global_batch(mesh: Mesh, local: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
  """This process's rows -> global arrays sharded on `data` (every process passes its own)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def jit_train_step(step_fn: Callable, mesh: Mesh, state: Any) -> Callable:
  """`step_fn(state, batch, rng) -> (state, metrics)` compiled over the mesh; state donated."""
  state_sh = state_sharding(mesh, state)
  replicated = NamedSharding(mesh, P())
  return jax.jit(step_fn, in_shardings=(state_sh, batch_sharding(mesh), replicated),
                 out_shardings=(state_sh, replicated), donate_argnums=0)


def pmap_train_step(step_fn: Callable) -> Callable:
  """The same step per local device; batches [devices, B / devices, ...], state replicated."""
  return jax.pmap(functools.partial(step_fn, axis_name=AXIS), axis_name=AXIS,
                  in_axes=(0, 0, None), donate_argnums=0)


def replicate(tree: Any) -> Any:
  """One copy per local device, for the pmap path."""
  n = jax.local_device_count()
  # A host array with a leading device axis; pmap places one slice on each device.
  return jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), tree)


def unreplicate(tree: Any) -> Any:
  return jax.tree.map(lambda x: x[0], tree)


def split_for_pmap(local: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """[B, ...] -> [local devices, B / local devices, ...]."""
  n = jax.local_device_count()
  return {k: v.reshape(n, v.shape[0] // n, *v.shape[1:]) for k, v in local.items()}
