"""Orbax checkpoints of a run: train state (arrays) + loop state (JSON: data iterator, schedules).

Two managers under `<workdir>/checkpoints`: `last/` keeps the most recent N steps (what a restart
resumes from) and `best/` keeps the single step with the best validation metric. Orbax writes a
step into a temporary directory and renames it when complete, so a kill during a save leaves the
previous steps loadable; a step that is present but unreadable is skipped with a warning and the
one before it is restored.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpoints:
  """Saving and restoring `(state, loop_state)` pairs; `state` is any pytree of arrays."""

  def __init__(self, directory: str, keep: int = 2):
    directory = os.path.abspath(directory)
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
    """
    for step in sorted(self.last.all_steps(), reverse=True):
      try:
        restored = self.last.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), loop=ocp.args.JsonRestore()))
      except Exception as e:  # noqa: BLE001 -- any unreadable step: fall back to the previous
        logging.warning("checkpoint step %d in %s is unreadable (%s: %s); trying the one before",
                        step, self.last.directory, type(e).__name__, e)
        continue
      return step, restored.state, restored.loop
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
