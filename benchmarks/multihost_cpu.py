"""Two processes on one machine stand in for two hosts: the losses must match one process.

  python benchmarks/multihost_cpu.py [--steps 20]

Runs `train.py` with configs/tiny.py on a generated copy task three times: once as a single
process with 8 CPU devices, then as two processes with 4 CPU devices each, joined by
`jax.distributed.initialize` on localhost (gloo collectives). Both see the same 8-device global
batch, so their per-step training losses must agree (up to float reassociation). Prints the
largest relative difference and exits non-zero above 1e-5. Too slow for the CI test budget (two
concurrent JAX processes on 2 cores), so it lives here.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import socket
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _copy_dict(path: pathlib.Path) -> str:
  rng = random.Random(0)
  words = set()
  while len(words) < 400:
    words.add("".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))))
  path.write_text("".join(f"{w} {' '.join(c.upper() for c in w)}\n" for w in sorted(words)))
  return str(path)


def _losses(workdir: pathlib.Path) -> list[float]:
  with open(workdir / "metrics.jsonl") as f:
    return [row["train_loss"] for row in map(json.loads, f) if "train_loss" in row]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  tmp = pathlib.Path(tempfile.mkdtemp())
  base = [sys.executable, str(ROOT / "train.py"), f"--config={ROOT / 'configs' / 'tiny.py'}",
          f"--config.data.options.dict_path={_copy_dict(tmp / 'copy.dict')}",
          f"--config.data.data_dir={tmp / 'tfds'}", f"--config.train.num_steps={args.steps}",
          "--config.data.test_split="]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  single = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  subprocess.run([*base, f"--workdir={tmp / 'one'}"], env=single, check=True,
                 capture_output=True)
  with socket.socket() as s:  # a free port for the coordinator
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  multi = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  procs = [subprocess.Popen(
      [*base, f"--workdir={tmp / 'two'}", "--config.train.distributed=True",
       f"--config.train.coordinator_address=127.0.0.1:{port}",
       "--config.train.num_processes=2", f"--config.train.process_id={i}",
       "--config.train.cpu_collectives=gloo"], env=multi,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  for i, proc in enumerate(procs):
    out, _ = proc.communicate(timeout=900)
    if proc.returncode:
      sys.exit(f"process {i} failed:\n{out[-3000:]}")
  one, two = _losses(tmp / "one"), _losses(tmp / "two")
  worst = max(abs(a - b) / abs(a) for a, b in zip(one, two, strict=True))
  print(f"{len(one)} steps; 1 process x 8 devices vs 2 processes x 4 devices: "
        f"largest relative loss difference {worst:.2e}")
  print(f"first losses: {one[:3]} vs {two[:3]}")
  sys.exit(0 if worst <= 1e-5 and len(one) == args.steps else 1)


if __name__ == "__main__":
  main()
