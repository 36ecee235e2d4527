"""Keeping freed host memory for reuse, so XLA:CPU does not fault in fresh pages every step.

XLA:CPU allocates a compiled step's temporary buffers (scan stacks, gradients, matmul outputs) with
malloc on every call and frees them at its end. glibc serves blocks above its mmap threshold with
fresh `mmap`s and gives freed memory back to the system, so every step touches tens of megabytes
of new pages: on the default G2P train step that was ~24,000 page faults per step and kernels that
ran 1.2-1.5x slower than on reused memory (docs/speed.md has the measurements).
`keep_freed_memory` sets glibc's malloc to serve large blocks from its heap, never trim it, and
use one arena for all threads, so freed buffers are reused and page faults stop (0 per step
measured).

The settings are process-wide and only affect threads created after the call: call it before
JAX creates its CPU backend (before the first computation; importing jax is fine). The price is
that the process keeps its peak heap instead of returning memory to the system. train.py calls it
unless --nokeep_freed_memory, decode.py only with --keep_freed_memory (decoding measured no
faster with it); it changes no result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 1 << 30),
             (_M_TOP_PAD, 256 << 20))


def keep_freed_memory() -> bool:
  """Applies the malloc settings above; True if they took effect (Linux with glibc only)."""
  if not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
    return False
  return all(mallopt(param, value) == 1 for param, value in _SETTINGS)
