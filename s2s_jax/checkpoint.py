"""Orbax checkpoints of a run: train state (arrays) + loop state (JSON: data iterator, schedules).

Two managers under `<workdir>/checkpoints`: `last/` keeps the most recent N steps (what a restart
resumes from) and `best/` keeps the single step with the best validation metric. Orbax writes a
step into a temporary directory and renames it when complete, so a kill during a save leaves the
previous steps loadable.

Integrity: every step is saved with a digest (a CRC-32 of each array's dtype, shape and bytes),
and only if every floating-point array is finite, so "the last good checkpoint" is true. Each
restore recomputes the digest; a step that is unreadable, fails its digest or holds non-finite
values is skipped with one warning line saying why, and the newest good step is restored
instead. Training moves such steps out of the way (to `checkpoints/unreadable/`), so keep-N
cleanup never deletes a good step in favour of a bad one. Steps saved before digests existed
are restored unverified.

Decoding reads parameters only: `restore_params` (one checkpoint) and `restore_last_params` (the
most recent ones, for averaging); this module is the only one that knows the layout.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import gc
import logging
import os
import shutil
import sys
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

_ITEMS = ("state", "loop", "digest")


class BadCheckpoint(ValueError):
  """A kept step that cannot be trusted: unreadable, failing its digest, or not finite."""


def _path_name(path: tuple) -> str:
  """A leaf's path as `a/b/0`, the same for a dataclass, a dict or a list holding it."""
  return "/".join(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path)


def _host_leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
  """(path, this process's full copy) of every array leaf (replicated arrays: one replica)."""
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      if not leaf.is_fully_replicated:
        continue  # a shard of another process's array: that process checks it
      leaf = leaf.addressable_data(0)
    leaves.append((_path_name(path), np.asarray(leaf)))
  return leaves


def _crc(array: np.ndarray) -> int:
  header = f"{array.dtype.str}{array.shape}".encode()
  return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1),
                    zlib.crc32(header))


def _not_finite(leaves: list[tuple[str, np.ndarray]]) -> list[str]:
  return [name for name, a in leaves
          if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a))]


def digest(tree: Any) -> dict[str, Any]:
  """What is saved with a step to verify it: `{"crc32": [[path, crc], ...]}`.

  Raises:
    FloatingPointError: a floating-point leaf holds NaN or infinity (names the leaves).
  """
  leaves = _host_leaves(tree)
  bad = _not_finite(leaves)
  if bad:
    raise FloatingPointError(f"{len(bad)} arrays are not finite ({', '.join(bad[:3])})")
  return {"crc32": [[name, _crc(a)] for name, a in leaves]}


def verify(tree: Any, saved: dict[str, Any] | None, step: int) -> None:
  """Checks a restored tree against the digest saved with it (None: saved before digests).

  Matched as a multiset of CRCs, so a dataclass saved and a dict restored compare alike.

  Raises:
    BadCheckpoint: names the arrays whose bytes differ, or those not finite.
  """
  leaves = _host_leaves(tree)
  bad = _not_finite(leaves)
  if bad:
    raise BadCheckpoint(f"step {step} holds non-finite values ({', '.join(bad[:3])})")
  if saved is None:
    return
  have = collections.Counter(_crc(a) for _, a in leaves)
  differ = []
  for name, crc in saved["crc32"]:
    if have[crc]:
      have[crc] -= 1
    else:
      differ.append(name)
  if differ:
    raise BadCheckpoint(f"step {step} fails its digest: {len(differ)} of {len(saved['crc32'])} "
                        f"arrays differ from what was saved ({', '.join(differ[:3])})")


def _unreadable(step: int, e: Exception) -> BadCheckpoint:
  first_line = str(e).splitlines()[0].split(". See full TensorStore")[0][:200] if str(e) else ""
  return BadCheckpoint(f"step {step} is unreadable ({type(e).__name__}: {first_line})")


@contextlib.contextmanager
def _quiet_unraisable() -> Iterator[None]:
  """Orbax reads arrays in coroutines; when one fails, the others' failures surface as Python's
  "Exception ignored in <coroutine>" tracebacks on stderr. The first failure is reported (one
  line); these repeat it, so they go to the debug log."""
  hook = sys.unraisablehook
  sys.unraisablehook = lambda u: log.debug("also failed: %s", u.exc_value)
  try:
    yield
  finally:
    gc.collect()  # let the failed coroutines be collected while the hook is quiet
    sys.unraisablehook = hook


def _restore(manager: ocp.CheckpointManager, step: int, state_args: Any,
             with_loop: bool = True) -> Any:
  """Restores and verifies one step (`.state`, `.loop` when asked).

  Raises:
    BadCheckpoint: the step is unreadable, fails its digest or is not finite (says which).
  """
  error = None
  with _quiet_unraisable():
    try:
      has_digest = "digest" in manager.item_metadata(step).keys()
      items = {"state": state_args, "loop": ocp.args.JsonRestore() if with_loop else None,
               "digest": ocp.args.JsonRestore() if has_digest else None}
      restored = manager.restore(step, args=ocp.args.Composite(
          **{k: v for k, v in items.items() if v is not None}))
    except Exception as e:  # noqa: BLE001 -- any unreadable step is reported the same way
      # Not chained: the failed read's frames would keep its coroutines alive past the hook.
      error = _unreadable(step, e)
  if error is not None:
    raise error
  verify(restored.state, restored.digest if has_digest else None, step)
  return restored


def _is_disk_full(e: BaseException) -> bool:
  while e is not None:
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left on device" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def _remove_partial_saves(directory: str) -> list[str]:
  """Removes Orbax's temporary step directories (a save that did not complete) under
  `directory`'s `last/` and `best/`."""
  partial = [os.path.join(directory, kind, name) for kind in ("last", "best")
             if os.path.isdir(os.path.join(directory, kind))
             for name in os.listdir(os.path.join(directory, kind))
             if ".orbax-checkpoint-tmp" in name]
  for path in partial:
    shutil.rmtree(path, ignore_errors=True)
  return partial


class Checkpoints:
  """Saving and restoring `(state, loop_state)` pairs; `state` is any pytree of arrays."""

  def __init__(self, directory: str, keep: int = 2):
    self.directory = directory = os.path.abspath(directory)
    self.last = ocp.CheckpointManager(
        os.path.join(directory, "last"), item_names=_ITEMS,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self.best = ocp.CheckpointManager(
        os.path.join(directory, "best"), item_names=_ITEMS,
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
    self._saving: tuple[int | None, Any] = (None, None)  # the newest save, for its errors

  def save(self, step: int, state: Any, loop_state: dict, *, best: bool = False) -> None:
    """Saves asynchronously (arrays are copied first, so training may go on and donate them),
    with the state's digest.

    Raises:
      FloatingPointError: the state is not finite; nothing is saved.
    """
    try:
      state_digest = digest(state)
    except FloatingPointError as e:
      self.wait()
      raise FloatingPointError(
          f"step {step}: {e}: not saved. The last good checkpoint (step "
          f"{self.last.latest_step()}) is kept in {self.last.directory}; lower "
          "optimizer.learning_rate or set optimizer.clip_norm and resume from it") from None
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              loop=ocp.args.JsonSave(loop_state),
                              digest=ocp.args.JsonSave(state_digest))
    self.wait()  # the previous save's errors are its own, not this step's
    with self._disk_errors(step, state):
      self.last.save(step, args=args, force=True)
      if best:
        self.best.save(step, args=args, force=True)
    self._saving = (step, state)

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    """`(step, state, loop_state)` of the newest good step, or None if there is none. Newer
    steps that are not good are moved to `checkpoints/unreadable/` (one warning line each).

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
        restored = _restore(self.last, step, ocp.args.StandardRestore(abstract_state))
      except BadCheckpoint as e:
        failures.append((step, str(e)))
        continue
      for bad, why in failures:
        log.warning("checkpoint %s: not used, moved to %s", why, self._set_aside(bad))
      return step, restored.state, restored.loop
    if failures:
      raise ValueError(
          f"none of the checkpoints in {self.last.directory} can be restored into this run's "
          f"state ({'; '.join(m for _, m in failures)}). If the config changed since they were "
          "written, resume with the config the run was trained with (its config.json) or train "
          "in a new workdir; to start over, delete the checkpoints directory")
    return None

  def _set_aside(self, step: int) -> str:
    """Moves a bad step of `last/` to `unreadable/last-<step>` (kept for inspection), so the
    manager's keep-N cleanup sees only good ones; returns where. (`best/` is verified when it
    is used.)"""
    path = os.path.join(self.last.directory, str(step))
    target = os.path.join(self.directory, "unreadable", f"last-{step}")
    if jax.process_index() == 0 and os.path.isdir(path):
      shutil.rmtree(target, ignore_errors=True)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.replace(path, target)
    self.last.reload()
    return target

  def restore_best(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    """`(step, state, loop_state)` of the best step; None if there is none or it is not good
    (one warning line)."""
    step = self.best.latest_step()
    if step is None:
      return None
    try:
      restored = _restore(self.best, step, ocp.args.StandardRestore(abstract_state))
    except BadCheckpoint as e:
      log.warning("best checkpoint %s in %s; not used", e, self.best.directory)
      return None
    return step, restored.state, restored.loop

  def wait(self) -> None:
    """Waits for the saves in flight (see `save` for the errors)."""
    with self._disk_errors(*self._saving):
      self.last.wait_until_finished()
      self.best.wait_until_finished()

  @contextlib.contextmanager
  def _disk_errors(self, step: int | None, state: Any) -> Iterator[None]:
    """A full disk during a save (Orbax reports it as a ValueError from TensorStore, perhaps
    at the next call): one OSError saying where, how much is free and what the step needs,
    after removing the save's temporary directories, so the next run resumes cleanly."""
    try:
      yield
    except Exception as e:  # noqa: BLE001 -- only a full disk is translated; the rest re-raised
      if not _is_disk_full(e):
        raise
      for manager in (self.last, self.best):  # let every save thread end before cleaning up
        with contextlib.suppress(Exception):
          manager.wait_until_finished()
      removed = _remove_partial_saves(self.directory)
      free = shutil.disk_usage(self.directory).free
      need = sum(a.nbytes for _, a in _host_leaves(state)) if state is not None else 0
      self.last.reload()
      good = self.last.latest_step()
      resume = "the start" if good is None else f"step {good}"
      raise OSError(
          f"no space left on the device of {self.directory} while saving checkpoint step "
          f"{step} ({free / 1e6:.1f} MB free; a step takes about {need / 1e6:.1f} MB); removed "
          f"{len(removed)} partial save(s). Free some space and run again: it resumes from "
          f"{resume}") from None

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
  """(steps, parameter trees) of the `n` most recent good checkpoints a run kept under
  `directory` (`last/` and `best/` together), oldest first; see `restore_params` for which
  parameters. A step that is not good is skipped with one warning line.

  Raises:
    FileNotFoundError: the run saved no checkpoint yet.
    ValueError: fewer than `n` good checkpoints are kept (lists those that are).
  """
  if n < 1:
    raise ValueError(f"average_last={n} must be >= 1")
  by_step = _by_step(_managers(directory))
  if len(by_step) < n:
    raise ValueError(f"average_last={n}: {directory} keeps {len(by_step)} checkpoints (available: "
                     f"{sorted(by_step)}); ask for fewer, or train with more "
                     "train.keep_checkpoints")
  good = {}
  for step in sorted(by_step, reverse=True):
    if len(good) == n:
      break
    try:
      good[step] = _restore_step(by_step[step], step)
    except BadCheckpoint as e:
      log.warning("checkpoint %s in %s; skipped", e, directory)
  if len(good) < n:
    raise ValueError(f"average_last={n}: only {len(good)} of the checkpoints in {directory} are "
                     f"good (steps {sorted(good)}); ask for fewer")
  steps = tuple(sorted(good))
  return steps, [good[step] for step in steps]


def _managers(directory: str) -> dict[str, tuple[ocp.CheckpointManager, list[int]]]:
  """{'last' / 'best': (its manager, its steps)} for the kinds the run has saved."""
  steps = {}
  for kind in ("last", "best"):
    path = os.path.join(directory, kind)
    if os.path.isdir(path):
      manager = ocp.CheckpointManager(path, item_handlers={
          "state": ocp.StandardCheckpointHandler(), "loop": ocp.JsonCheckpointHandler(),
          "digest": ocp.JsonCheckpointHandler()})
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
      evaluated or the best step is not good), 'last' (the latest good step: newer ones that
      are not good are skipped with one warning line each) or a step number.

  Raises:
    FileNotFoundError: the run saved no checkpoint yet.
    ValueError: `which` is not a kept step (lists those that are), or that step is not good;
      no kept step is good.
  """
  steps = _managers(directory)
  by_step = _by_step(steps)
  available = sorted(by_step)
  tried, failures = None, []  # a best step that failed is not tried again below
  if which == "best" and steps.get("best", (None, []))[1]:
    step = max(steps["best"][1])
    try:
      return step, _restore_step(steps["best"][0], step)
    except BadCheckpoint as e:
      log.warning("best checkpoint %s in %s; using the latest good step", e, directory)
      tried = (steps["best"][0], step)
      failures.append(str(e))
  elif which == "best":
    log.warning("%s has no best checkpoint (no validation yet); using the latest step", directory)
  if which in ("best", "last"):
    for step in sorted(by_step, reverse=True):
      if (by_step[step], step) == tried:
        continue
      try:
        return step, _restore_step(by_step[step], step)
      except BadCheckpoint as e:
        log.warning("checkpoint %s in %s; trying the one before", e, directory)
        failures.append(str(e))
    raise ValueError(f"no checkpoint in {directory} is good: {'; '.join(failures)}")
  try:
    step = int(which)
  except ValueError:
    raise ValueError(f"checkpoint={which!r} is invalid: use 'best', 'last' or a step number "
                     f"(available: {available})") from None
  if step not in by_step:
    raise ValueError(f"no checkpoint for step {step} in {directory}; available: {available}")
  return step, _restore_step(by_step[step], step)


def _restore_step(manager: ocp.CheckpointManager, step: int) -> Any:
  """The parameters of one verified step (`BadCheckpoint` if it is not good)."""
  # Restore onto this process's first device, whatever mesh the run trained on.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    metadata = dict(manager.item_metadata(step).state)
  except Exception as e:  # noqa: BLE001 -- unreadable metadata: a bad step like any other
    raise _unreadable(step, e) from e
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        metadata)
  state = _restore(manager, step, ocp.args.StandardRestore(target), with_loop=False).state
  # A run with train.ema_decay > 0 evaluated and chose its best step with the moving average.
  return state["params"] if state.get("ema_params") is None else state["ema_params"]
