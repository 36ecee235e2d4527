"""Reading the user's text files line by line with errors that name the file and line.

Every reader here is strict by default: a problem raises `InputError` with the path and the
1-based line number. Where a caller allows skipping (`skip_bad_lines=True`), each skipped line is
counted in a `SkipCounter`, never silently lost.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import BinaryIO


class InputError(ValueError):
  """A problem in an input file, located at `path`:`line` (1-based; 0 when not line-specific).

  `reason` is the kind of problem that skipped lines are counted under (default: the message).
  """

  def __init__(self, path: str | os.PathLike, line: int, message: str, reason: str | None = None):
    self.path = os.fspath(path)
    self.line = line
    self.reason = reason or message
    self.message = message
    where = f"{self.path}:{line}" if line else self.path
    super().__init__(f"{where}: {message}")

  def __reduce__(self):  # picklable, so an error raised in a worker process keeps its location
    return InputError, (self.path, self.line, self.message, self.reason)


@dataclasses.dataclass
class SkipCounter:
  """Counts skipped lines by reason, and keeps the first few locations to report."""

  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: list[str] = dataclasses.field(default_factory=list)
  max_examples: int = 5

  def add(self, error: InputError) -> None:
    self.counts[error.reason] += 1
    if len(self.examples) < self.max_examples:
      self.examples.append(str(error))

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def as_dict(self) -> dict[str, int]:
    return dict(self.counts)


def reject(error: InputError, skipped: SkipCounter | None) -> None:
  """Raises `error`, or counts it in `skipped` when the caller skips bad lines."""
  if skipped is None:
    raise error
  skipped.add(error)


def check_exists(path: str | os.PathLike, what: str) -> str:
  """`path` as a string; raises `InputError` naming `what` (e.g. a config field) if it is absent."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise InputError(path, 0, f"{what}: file not found")
  return path


def read_lines(path: str | os.PathLike, what: str = "input",
               skipped: SkipCounter | None = None) -> Iterator[tuple[int, str | None]]:
  """Yields (line number, text without the line ending) of a UTF-8 file.

  With `skipped` given, a line that is not UTF-8 is counted there and yielded as None (so aligned
  readers stay aligned) instead of raising.

  Raises:
    InputError: the file is missing, or a line is not valid UTF-8 (decoding is per line, so the
      error names the exact line).
  """
  path = check_exists(path, what)
  with open(path, "rb") as f:
    yield from stream_lines(f, path, skipped)


def stream_lines(stream: BinaryIO, name: str, skipped: SkipCounter | None = None
                 ) -> Iterator[tuple[int, str | None]]:
  """`read_lines` of an open binary stream (e.g. `sys.stdin.buffer`), errors naming `name`."""
  for number, raw in enumerate(stream, start=1):
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      error = InputError(name, number, f"not valid UTF-8 ({e.reason} at byte {e.start})",
                         reason="not valid UTF-8")
      if skipped is None:
        raise error from None
      skipped.add(error)
      yield number, None
      continue
    if number == 1 and text.startswith("\ufeff"):  # a BOM is an encoding mark, not data
      text = text[1:]
    yield number, text.rstrip("\r\n")


def fingerprint(paths: Sequence[str | os.PathLike], salt: str = "") -> str:
  """A sha256 over `salt` and the names and contents of `paths`, so prepared data notices edited
  inputs."""
  digest = hashlib.sha256(salt.encode())
  for path in paths:
    name = os.path.basename(os.fspath(path)).encode()
    digest.update(b"%d:%s:%d:" % (len(name), name, os.path.getsize(path)))
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  return digest.hexdigest()
