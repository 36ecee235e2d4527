"""A run's directory (its workdir): one `train.py` at a time, and the run's record.

The lock is `fcntl.flock` on `<workdir>/.lock`, which the OS releases when its process dies,
so a lock left by a killed run never blocks the next one; the file names the holder (host and
pid) for the message a second run prints.

`config.json` is the record decode.py builds the model from. It is written atomically (a
temporary file renamed over it) and only after the whole config has been checked, and a run
that resumes a workdir must keep the fields that decide the model and its data (`must_keep`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from s2s_jax import files

CONFIG = "config.json"

# A resumed run keeps what decides the model and its data: every `model.` and `data.` field
# and the seed (the data order). Training's budget and schedules (`train.`, `optimizer.`) may
# change, e.g. more steps or a lower learning rate after a divergence; so may these two.
RESUMABLE_DATA = frozenset({"data.num_workers", "data.eval_max_tokens"})


def must_keep(field: str) -> bool:
  """Whether a resumed run must keep this (dotted) config field."""
  return field == "seed" or (field.startswith(("model.", "data.")) and
                             field not in RESUMABLE_DATA)


class WorkdirBusy(OSError):
  """Another process holds the workdir's lock."""


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds `<workdir>/.lock` exclusively for the block.

  Raises:
    WorkdirBusy: another live process holds it (the message names it).
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, ".lock")
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
      raise WorkdirBusy(f"{workdir} is in use by {holder} (another train.py on this workdir); "
                        "wait for it to end or train in another workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def changed_fields(saved: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """The dotted names of the fields a resumed run must keep that differ between two configs
  (as JSON), or that only one of them has."""
  a, b = _flatten(saved), _flatten(new)
  return sorted(k for k in a.keys() | b.keys()
                if must_keep(k) and a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


def check_resume(workdir: str, config_json: str) -> None:
  """Refuses a config that differs from the workdir's record in a field that changes the model
  or the data.

  Raises:
    ValueError: names the fields, their saved and new values.
  """
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    return
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path} is unreadable ({e}); restore it, or train in a new workdir") from e
  new = json.loads(config_json)
  changed = changed_fields(saved, new)
  if changed:
    a, b = _flatten(saved), _flatten(new)
    shown = ", ".join(f"{k} (saved {a.get(k, 'absent')!r}, now {b.get(k, 'absent')!r})"
                      for k in changed[:6])
    more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
    raise ValueError(
        f"{workdir} holds a run with another config: {shown}{more}. A resumed run keeps the "
        "model., data. and seed fields of its config.json; train in a new workdir, or pass the "
        "saved values")


def save_config(workdir: str, config_json: str) -> None:
  """Writes the run's record atomically (unchanged bytes are not rewritten)."""
  path = os.path.join(workdir, CONFIG)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      if f.read() == config_json:
        return
  files.atomic_write(path, config_json.encode())
