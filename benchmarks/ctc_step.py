"""The CTC term's share of the train step: the same model and batch with and without it.

  python benchmarks/ctc_step.py [--config configs/asr_words.py] [--ctc_weight 0.3] [--rounds 5]

Builds the config's model twice, `model.ctc_weight` 0 (no CTC head) and the given weight, and
times their jitted `training.train_step` on one synthetic batch of the config's shape (audio:
`--rows` utterances of `--frames` feature frames; text: `--rows` sources of `--length` tokens),
interleaved (A B, B A, ...) in one process after compiling both. Prints the median seconds per
step of each and their ratio, and writes benchmarks/results/ctc_step_<config>.json.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from s2s_jax import optim, training  # noqa: E402
from s2s_jax.model import ModelConfig, Seq2Seq  # noqa: E402
from s2s_jax.special_ids import BOS_ID, EOS_ID  # noqa: E402


def _config(path: str):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _batch(cfg: ModelConfig, rows: int, length: int, frames: int, target: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  tgt = rng.integers(4, cfg.tgt_vocab_size, (rows, target)).astype(np.int32)
  tgt_out = np.concatenate([tgt, np.full((rows, 1), EOS_ID, np.int32)], axis=1)
  tgt_in = np.concatenate([np.full((rows, 1), BOS_ID, np.int32), tgt], axis=1)
  batch = {"tgt_in": jnp.asarray(tgt_in), "tgt_out": jnp.asarray(tgt_out)}
  if cfg.source == "audio":
    samples = cfg.source_size(frames)
    batch["audio"] = jnp.asarray(rng.integers(-3000, 3000, (rows, samples)).astype(np.int16))
    batch["audio_len"] = jnp.full((rows,), samples, jnp.int32)
  else:
    src = rng.integers(4, cfg.src_vocab_size, (rows, length)).astype(np.int32)
    src[:, -1] = EOS_ID
    batch["src"] = jnp.asarray(src)
  return batch


def interleaved_seconds(steps: dict, states: dict, batch, rounds: int, per_round: int
                        ) -> dict[Any, list[float]]:
  """Seconds per train step of each compiled `steps[k]` on `batch`, timed `per_round` steps at
  a time in rounds of alternating order (A B .., .. B A) so drift hits every side alike;
  `states` is updated in place."""
  times = {k: [] for k in steps}
  order = list(steps)
  for r in range(rounds):
    for k in order if r % 2 == 0 else order[::-1]:
      start = time.perf_counter()
      for _ in range(per_round):
        states[k], _ = steps[k](states[k], batch, jax.random.PRNGKey(1))
      jax.block_until_ready(states[k])
      times[k].append((time.perf_counter() - start) / per_round)
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "asr_words.py"))
  parser.add_argument("--ctc_weight", type=float, default=0.3)
  parser.add_argument("--rows", type=int, default=64)
  parser.add_argument("--frames", type=int, default=96, help="feature frames (audio)")
  parser.add_argument("--length", type=int, default=12, help="source tokens (text)")
  parser.add_argument("--target", type=int, default=10, help="target tokens before EOS")
  parser.add_argument("--vocab", type=int, default=40, help="source and target vocabularies")
  parser.add_argument("--steps", type=int, default=10, help="timed steps per round and side")
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()

  config = _config(args.config)
  steps, states, batch = {}, {}, None
  for weight in (0.0, args.ctc_weight):
    cfg = ModelConfig.for_vocabularies({**config.model.to_dict(), "ctc_weight": weight},
                                       args.vocab, args.vocab)
    batch = batch or _batch(cfg, args.rows, args.length, args.frames, args.target)
    schedule = optim.make_schedule(config.optimizer, 1000)
    states[weight] = training.create_train_state(
        jax.random.PRNGKey(0), Seq2Seq(cfg), optim.make_optimizer(config.optimizer), schedule)
    steps[weight] = jax.jit(functools.partial(
        training.train_step, label_smoothing=config.train.label_smoothing, ctc_weight=weight))
    states[weight], _ = steps[weight](states[weight], batch, jax.random.PRNGKey(1))  # compile
    jax.block_until_ready(states[weight])

  times = interleaved_seconds(steps, states, batch, args.rounds, args.steps)
  median = {w: statistics.median(t) for w, t in times.items()}
  ratio = median[args.ctc_weight] / median[0.0]
  report = {"config": os.path.relpath(args.config, ROOT), "ctc_weight": args.ctc_weight,
            "batch": {k: list(v.shape) for k, v in batch.items()},
            "seconds_per_step": {str(w): t for w, t in times.items()},
            "median_seconds": {str(w): m for w, m in median.items()},
            "ctc_step_over_plain_step": ratio,
            "ctc_share_of_the_step": 1 - 1 / ratio,
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "jax": jax.__version__}}
  name = os.path.splitext(os.path.basename(args.config))[0]
  out = os.path.join(HERE, "results", f"ctc_step_{name}.json")
  with open(out, "w") as f:
    json.dump(report, f, indent=1)
  print(f"{name}: plain {median[0.0] * 1e3:.1f} ms/step, with CTC (weight {args.ctc_weight}) "
        f"{median[args.ctc_weight] * 1e3:.1f} ms/step: {ratio:.3f}x, CTC share "
        f"{100 * (1 - 1 / ratio):.1f}% ({out})")


if __name__ == "__main__":
  main()
