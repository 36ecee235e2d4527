"""What one short decode costs from a cold and from a warm start, with and without JAX's
persistent compilation cache (decode.py's --compilation_cache, on by default).

  python benchmarks/decode_latency.py --workdir=/tmp/g2p [--repeats 3]

Each measurement is a fresh process, timed from its start to its exit:
- `cli`: `echo hello | python decode.py --workdir=...` (the default beam search);
- `api`: `python -c "import s2s_jax; s2s_jax.load(workdir).decode(['hello'])"`, with the cache
  turned on by `s2s_jax.enable_compilation_cache()` or not;
- `import`: `python -c "import s2s_jax.inference"`, the floor every call pays.
"cold" runs with an empty cache directory (the first call on a machine), "warm" with the one the
cold run filled. The order is interleaved per repeat so a busy machine slows all alike. Writes
benchmarks/results/decode_latency.json (medians, all times, the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_API = """
import sys
import s2s_jax
if sys.argv[2]:
  s2s_jax.enable_compilation_cache(sys.argv[2])
print(s2s_jax.load(sys.argv[1]).decode(["hello"])[0].text)
"""


def _timed(cmd: list[str], stdin: str | None = None) -> float:
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  start = time.perf_counter()
  subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
  return time.perf_counter() - start


def _call(name: str, workdir: str, cache: str) -> float:
  """Seconds of one `cli` or `api` call with `cache` ('' = no cache)."""
  if name == "cli":
    return _timed([sys.executable, os.path.join(ROOT, "decode.py"), f"--workdir={workdir}",
                   f"--compilation_cache={cache}"], stdin="hello\n")
  return _timed([sys.executable, "-c", _API, workdir, cache])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                    "decode_latency.json"))
  args = parser.parse_args()
  times: dict[str, list[float]] = {}
  for _ in range(args.repeats):
    times.setdefault("import", []).append(
        _timed([sys.executable, "-c", "import s2s_jax.inference"]))
    for name in ("cli", "api"):
      times.setdefault(f"{name} no cache", []).append(_call(name, args.workdir, ""))
      cache = tempfile.mkdtemp(prefix="jax-cache-")  # empty: this call's own cold start
      try:
        for kind in ("cold", "warm"):  # the second call finds what the first one wrote
          times.setdefault(f"{name} {kind} cache", []).append(_call(name, args.workdir, cache))
      finally:
        shutil.rmtree(cache, ignore_errors=True)
  medians = {k: statistics.median(v) for k, v in times.items()}
  for name in ("cli", "api"):
    medians[f"{name} warm / no cache"] = medians[f"{name} warm cache"] / medians[
        f"{name} no cache"]
  print("| call | median seconds |\n|---|---|")
  for key, value in medians.items():
    print(f"| {key} | {value:.2f} |")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"workdir": args.workdir, "repeats": args.repeats, "median": medians,
               "seconds": times, "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(),
                                             "python": platform.python_version()}}, f, indent=1)


def _cpu_model() -> str:
  with open("/proc/cpuinfo") as f:
    for line in f:
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor()


if __name__ == "__main__":
  main()
