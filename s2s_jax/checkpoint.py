"""Orbax checkpoints of a run: train state (arrays) + loop state (JSON: data iterator, schedules).

Two managers under `<workdir>/checkpoints`: `last/` keeps the most recent N steps (what a restart
resumes from) and `best/` keeps the single step with the best validation metric. Orbax writes a
step into a temporary directory and renames it when complete, so a kill during a save leaves the
previous steps loadable; a step that is present but unreadable is skipped with a warning and the
one before it is restored.

Decoding reads parameters only: `restore_params` (one checkpoint) and `restore_last_params` (the
most recent ones, for averaging); this module is the only one that knows the layout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpoints:
  """Saving and restoring `(state, loop_state)` pairs; `state` is any pytree of arrays."""

  def __init__(self, directory: str, keep: int = 2):
    self.directory = directory = os.path.abspath(directory)
    items = ("state", "loop")
    self.last = ocp.CheckpointManager(
        os.path.join(directory, "last"), item_names=items,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self.best = ocp.CheckpointManager(
        os.path.join(directory, "best"), item_names=items,
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

  def save(self, step: int, state: Any, loop_state: dict, *, best: bool = False) -> None:
    """Saves asynchronously (arrays are copied first, so training may go on and donate them)."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              loop=ocp.args.JsonSave(loop_state))
    self.last.save(step, args=args, force=True)
    if best:
      self.best.save(step, args=args, force=True)

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    """`(step, state, loop_state)` of the newest readable step, or None if there is none.

    Args:
      abstract_state: the state's structure as `jax.ShapeDtypeStruct`s (with shardings), which
        the restored arrays take.

    Raises:
      ValueError: steps are kept but none can be restored into `abstract_state`: most often a
        run resumed with a different model or optimizer config (starting over at step 0 would
        silently replace its checkpoints).
    """
    failures = []
    for step in sorted(self.last.all_steps(), reverse=True):
      try:
        restored = self.last.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), loop=ocp.args.JsonRestore()))
      except Exception as e:  # noqa: BLE001 -- any unreadable step: fall back to the previous
        log.warning("checkpoint step %d in %s is unreadable (%s: %s); trying the one before",
                    step, self.last.directory, type(e).__name__, e)
        failures.append(f"step {step}: {type(e).__name__}: {str(e)[:300]}")
        continue
      return step, restored.state, restored.loop
    if failures:
      raise ValueError(
          f"none of the checkpoints in {self.last.directory} can be restored into this run's "
          f"state ({'; '.join(failures)}). If the config changed since they were written, "
          "resume with the config the run was trained with (its config.json) or train in a new "
          "workdir; to start over, delete the checkpoints directory")
    return None

  def restore_best(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    step = self.best.latest_step()
    if step is None:
      return None
    restored = self.best.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), loop=ocp.args.JsonRestore()))
    return step, restored.state, restored.loop

  def wait(self) -> None:
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.last.close()
    self.best.close()


def abstract(tree: Any) -> Any:
  """The `ShapeDtypeStruct` (with sharding) of every array in `tree`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


# ----------------------------------------------------------------------------- parameters


def average_params(trees: Sequence[Any], names: Sequence[str]) -> Any:
  """The elementwise mean of parameter trees of one architecture (summed in float32).

  Raises:
    ValueError: a tree's parameter names, shapes or dtypes differ from the first one's
      (checkpoints of different configs); the message names the tree and the parameter.
  """
  reference = {jax.tree_util.keystr(path): leaf
               for path, leaf in jax.tree_util.tree_flatten_with_path(trees[0])[0]}
  for tree, name in zip(trees[1:], names[1:], strict=True):
    leaves = {jax.tree_util.keystr(path): leaf
              for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
    if leaves.keys() != reference.keys():
      differ = sorted(leaves.keys() ^ reference.keys())
      raise ValueError(f"{name} and {names[0]} have different parameters ({', '.join(differ)}): "
                       "checkpoints of different configs cannot be averaged")
    for key, leaf in leaves.items():
      ref = reference[key]
      if (leaf.shape, leaf.dtype) != (ref.shape, ref.dtype):
        raise ValueError(f"parameter {key} is {leaf.dtype}{list(leaf.shape)} in {name} but "
                         f"{ref.dtype}{list(ref.shape)} in {names[0]}: checkpoints of different "
                         "configs cannot be averaged")
  return jax.tree.map(
      lambda *xs: (sum(x.astype(jnp.float32) for x in xs) / len(xs)).astype(xs[0].dtype),
      *trees)


def restore_last_params(directory: str, n: int) -> tuple[tuple[int, ...], list[Any]]:
  """(steps, parameter trees) of the `n` most recent checkpoints a run kept under `directory`
  (`last/` and `best/` together), oldest first; see `restore_params` for which parameters.

  Raises:
    FileNotFoundError: the run saved no checkpoint yet.
    ValueError: fewer than `n` checkpoints are kept (lists those that are).
  """
  if n < 1:
    raise ValueError(f"average_last={n} must be >= 1")
  by_step = _by_step(_managers(directory))
  if len(by_step) < n:
    raise ValueError(f"average_last={n}: {directory} keeps {len(by_step)} checkpoints (available: "
                     f"{sorted(by_step)}); ask for fewer, or train with more "
                     "train.keep_checkpoints")
  steps = tuple(sorted(by_step)[-n:])
  return steps, [_restore_step(by_step[step], step) for step in steps]


def _managers(directory: str) -> dict[str, tuple[ocp.CheckpointManager, list[int]]]:
  """{'last' / 'best': (its manager, its steps)} for the kinds the run has saved."""
  steps = {}
  for kind in ("last", "best"):
    path = os.path.join(directory, kind)
    if os.path.isdir(path):
      manager = ocp.CheckpointManager(path, item_handlers={
          "state": ocp.StandardCheckpointHandler(), "loop": ocp.JsonCheckpointHandler()})
      steps[kind] = (manager, manager.all_steps())
  if not any(all_steps for _, all_steps in steps.values()):
    raise FileNotFoundError(f"no checkpoint in {directory}: the run saved none yet")
  return steps


def _by_step(kinds: dict[str, tuple[ocp.CheckpointManager, list[int]]]
             ) -> dict[int, ocp.CheckpointManager]:
  """{step: the manager that holds it} over all kinds ('last' first where both hold a step)."""
  by_step = {}
  for manager, all_steps in kinds.values():
    for step in all_steps:
      by_step.setdefault(step, manager)
  return by_step


def restore_params(directory: str, which: str | int) -> tuple[int, Any]:
  """(step, parameters) of one checkpoint of the run whose checkpoints are under `directory`,
  placed on this process's first device whatever mesh the run trained on. The parameters are
  the moving average (`ema_params`) when the run kept one: that is what it evaluated with.

  Args:
    which: 'best' (the best validation step; the latest step, with a warning, when the run never
      evaluated), 'last' (the latest step) or a step number.

  Raises:
    FileNotFoundError: the run saved no checkpoint yet.
    ValueError: `which` is not a kept step (lists those that are).
  """
  steps = _managers(directory)
  by_step = _by_step(steps)
  available = sorted(by_step)
  if which == "best" and steps.get("best", (None, []))[1]:
    manager, step = steps["best"][0], max(steps["best"][1])
  elif which in ("best", "last"):
    if which == "best":
      log.warning("%s has no best checkpoint (no validation yet); using the latest step",
                      directory)
    manager, step = steps["last"][0], max(steps["last"][1])
  else:
    try:
      step = int(which)
    except ValueError:
      raise ValueError(f"checkpoint={which!r} is invalid: use 'best', 'last' or a step number "
                       f"(available: {available})") from None
    if step not in by_step:
      raise ValueError(f"no checkpoint for step {step} in {directory}; available: {available}")
    manager = by_step[step]
  return step, _restore_step(manager, step)


def _restore_step(manager: ocp.CheckpointManager, step: int) -> Any:
  # Restore onto this process's first device, whatever mesh the run trained on.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        dict(manager.item_metadata(step).state))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  # A run with train.ema_decay > 0 evaluated and chose its best step with the moving average.
  state = restored.state
  return state["params"] if state.get("ema_params") is None else state["ema_params"]
