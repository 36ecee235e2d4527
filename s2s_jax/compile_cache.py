"""JAX's persistent compilation cache, as train.py and decode.py use it (on by default there;
from Python, `s2s_jax.enable_compilation_cache()`): a second process that runs the same model
on the same shapes loads its compiled programs instead of compiling them again. On CPU that is
most of a short decode call's time (benchmarks/decode_latency.py).
"""

from __future__ import annotations

import os


def default_directory() -> str:
  """`$JAX_COMPILATION_CACHE_DIR` when set, else `$XDG_CACHE_HOME/s2s_jax/jax`
  (`~/.cache/s2s_jax/jax`)."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "s2s_jax", "jax")


def enable(directory: str | None = None) -> None:
  """Turns the cache on in `directory` (default `default_directory()`; '' leaves it off).
  Every program is cached, however fast it compiled: a decode call's are small but many."""
  directory = default_directory() if directory is None else directory
  if not directory:
    return
  import jax  # the CLIs import jax only once their flags are parsed
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
