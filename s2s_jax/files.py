"""Writing files so that a reader or a crash never sees half of one."""

from __future__ import annotations

import os
import tempfile


def atomic_write(path: str, data: bytes) -> None:
  """Writes `data` to `path` via a temporary file and a rename: readers never see part of it."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are meant to be shared
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
