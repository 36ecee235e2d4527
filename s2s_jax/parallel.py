"""Data parallelism: a device mesh for `jax.jit` (the default) and a `pmap` path, behind one
`DataParallel` object that the train loop uses without knowing which.

The jit path shards every batch on the mesh's `data` axis and replicates the train state; the
shardings come from `state_sharding` / `batch_sharding`, so adding a model axis later means
changing those two functions, not the step. The pmap path runs the same step function per device
with `axis_name='data'`, where the step sums gradients with `lax.psum`.
"""

from __future__ import annotations

import functools
import logging
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


def gather(x: jax.Array | np.ndarray) -> np.ndarray:
  """A global array's full value (or every process's rows of a host array) on every process."""
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


class DataParallel:
  """The jit-over-a-mesh path or the pmap path behind one interface, so the train loop has no
  branches: place the state, compile the step, take one copy of what the step returns, and lay
  out evaluation batches."""

  def __init__(self, mode: str, devices: list | None = None):
    if mode not in ("jit", "pmap"):
      raise ValueError(f"train.parallel={mode!r} is invalid; allowed: jit, pmap")
    self.pmap = mode == "pmap"
    self.mesh = make_mesh(devices)

  @property
  def batch_multiple(self) -> int:
    """The rows of every global batch divide among this many devices."""
    if self.pmap:
      return jax.local_device_count() * jax.process_count()
    return self.mesh.devices.size

  def place(self, state: Any) -> Any:
    """The state replicated on the mesh: the layout checkpoints restore into."""
    return jax.device_put(state, state_sharding(self.mesh, state))

  def compile_step(self, step_fn: Callable, state: Any) -> tuple[Callable, Any]:
    """(`step(state, local_batch, rng) -> (state, metrics)`, `state` laid out for it).

    `step_fn` is the pure step; `local_batch` is this process's rows as host arrays.
    """
    if self.pmap:
      fn = pmap_train_step(step_fn)
      return (lambda s, b, r: fn(s, split_for_pmap(b), r)), replicate(jax.device_get(state))
    fn = jit_train_step(step_fn, self.mesh, state)
    return (lambda s, b, r: fn(s, global_batch(self.mesh, b), r)), state

  def host(self, tree: Any) -> Any:
    """One copy of a tree the step returned (under pmap, device 0's: they are equal)."""
    return unreplicate(tree) if self.pmap else tree

  def eval_batch(self, local: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], Callable]:
    """(the batch for a jitted evaluation with `host` parameters, a function taking its per-row
    outputs to NumPy with every process's rows)."""
    if self.pmap:  # the parameters live on one device: evaluate the whole global batch there
      return {k: jax.numpy.asarray(gather(v)) for k, v in local.items()}, np.asarray
    return global_batch(self.mesh, local), gather


def initialize_distributed(cfg: Any) -> None:
  """`jax.distributed.initialize` from the config's `train` section (coordinator address,
  process count and id, CPU collectives), for multi-process runs."""
  if cfg.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
  if cfg.coordinator_address:
    jax.distributed.initialize(coordinator_address=cfg.coordinator_address,
                               num_processes=cfg.num_processes, process_id=cfg.process_id)
  else:
    jax.distributed.initialize()
  logging.getLogger(__name__).info("process %d of %d; %d local of %d devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
