"""What copy attention and coverage add to the summarization train step: the same model and batch
without copy, with copy, with copy + coverage (and its loss), and with copy + 8 extended-
vocabulary slots.

  python benchmarks/copy_step.py [--rows 64] [--length 48] [--target 8] [--rounds 5]

Builds configs/summarize_debian.py's model (vocabulary 8000) in each variant and times its
jitted `training.train_step` on one synthetic batch (`--rows` sources of `--length` tokens,
targets of `--target` tokens), interleaved (A B C D, D C B A, ...) in one process after
compiling all. Prints the median seconds per step of each and its ratio to the plain step, and
writes benchmarks/results/copy_step.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import ctc_step  # noqa: E402
import jax  # noqa: E402

from s2s_jax import optim, training  # noqa: E402
from s2s_jax.model import ModelConfig, Seq2Seq  # noqa: E402

VARIANTS = {  # name: (model overrides, coverage loss weight)
    "plain": ({"copy_attention": False}, 0.0),
    "copy": ({}, 0.0),
    "copy+coverage": ({"coverage": True}, 1.0),
    "copy+8 oov slots": ({"copy_oov_slots": 8}, 0.0),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rows", type=int, default=64)
  parser.add_argument("--length", type=int, default=48, help="source tokens")
  parser.add_argument("--target", type=int, default=8, help="target tokens before EOS")
  parser.add_argument("--vocab", type=int, default=8000)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round and variant")
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()

  config = ctc_step._config(os.path.join(ROOT, "configs", "summarize_debian.py"))
  steps, states, batch = {}, {}, None
  for name, (overrides, weight) in VARIANTS.items():
    cfg = ModelConfig.for_vocabularies({**config.model.to_dict(), **overrides}, args.vocab,
                                       args.vocab)
    batch = batch or ctc_step._batch(cfg, args.rows, args.length, 0, args.target)
    states[name] = training.create_train_state(
        jax.random.PRNGKey(0), Seq2Seq(cfg), optim.make_optimizer(config.optimizer),
        optim.make_schedule(config.optimizer, 1000))
    steps[name] = jax.jit(functools.partial(
        training.train_step, label_smoothing=config.train.label_smoothing,
        coverage_weight=weight))
    states[name], _ = steps[name](states[name], batch, jax.random.PRNGKey(1))  # compile
    jax.block_until_ready(states[name])

  times = ctc_step.interleaved_seconds(steps, states, batch, args.rounds, args.steps)
  median = {name: statistics.median(t) for name, t in times.items()}
  report = {"batch": {k: list(v.shape) for k, v in batch.items()},
            "seconds_per_step": times, "median_seconds": median,
            "over_plain": {name: m / median["plain"] for name, m in median.items()},
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "jax": jax.__version__}}
  out = os.path.join(HERE, "results", "copy_step.json")
  with open(out, "w") as f:
    json.dump(report, f, indent=1)
  for name, m in median.items():
    print(f"{name:18s} {m * 1e3:7.1f} ms/step  {m / median['plain']:.3f}x")
  print(out)


if __name__ == "__main__":
  main()
