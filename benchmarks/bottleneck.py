"""The fixed-length bottleneck in a couple of minutes: a model without attention against one with.

Task: reverse a random string of symbols (`a b c -> c b a`), 2 to 30 symbols from 10. Nothing
about the task gets harder with length except remembering the input: an encoder-decoder without
attention has to carry the whole string in its final state (a fixed H numbers), one with attention
reads the encoder's outputs again at every step. Both train for the same steps on the same
batches (same sizes, same optimizer), then decode fresh strings greedily; the figure plots exact
match and symbol accuracy by input length (docs/walkthrough.md shows it).

  python benchmarks/bottleneck.py                         # ~1 min per model on 2 CPU cores
  python benchmarks/bottleneck.py --max_length=60 --hidden_size=128 --out=/tmp/b  # 0.5 s a step

Writes <out>.png and <out>.json (the numbers behind the figure); default out: docs/bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import decode_speed  # benchmarks/: the CPU model's name
import jax
import jax.numpy as jnp
import numpy as np
import optax

from s2s_jax import metrics, training
from s2s_jax import search as search_lib
from s2s_jax.model import ModelConfig, Seq2Seq
from s2s_jax.special_ids import BOS_ID, EOS_ID, NUM_SPECIAL_IDS, PAD_ID

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model_config(attention: str, hidden_size: int = 64, num_symbols: int = 10) -> ModelConfig:
  """A 1-layer BiLSTM encoder and an LSTM decoder; `attention` 'none' or 'luong'."""
  vocab = NUM_SPECIAL_IDS + num_symbols
  return ModelConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, embed_size=32,
                     hidden_size=hidden_size, encoder_hidden_size=hidden_size // 2,
                     bidirectional=True, attention=attention, attention_score="general",
                     input_feeding=False, dropout=0.0)


def make_batch(rng: np.random.Generator, batch_size: int, lengths_B: np.ndarray,
               max_length: int, num_symbols: int = 10) -> dict[str, np.ndarray]:
  """Random strings of the given lengths and their reversals, padded to max_length + 1.

  src [B, L+1] = symbols + EOS; tgt_in = BOS + reversed; tgt_out = reversed + EOS.
  """
  shape = (batch_size, max_length + 1)
  src, tgt_in, tgt_out = (np.full(shape, PAD_ID, np.int32) for _ in range(3))
  for b, n in enumerate(lengths_B):
    s = rng.integers(NUM_SPECIAL_IDS, NUM_SPECIAL_IDS + num_symbols, size=n)
    src[b, :n + 1] = [*s, EOS_ID]
    tgt_in[b, :n + 1] = [BOS_ID, *s[::-1]]
    tgt_out[b, :n + 1] = [*s[::-1], EOS_ID]
  return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


def train(cfg: ModelConfig, steps: int, min_length: int, max_length: int, batch_size: int = 64,
          seed: int = 0, learning_rate: float = 1e-2) -> tuple[dict, list[float], float]:
  """Trains on fresh random strings; returns (params, loss every 50 steps, seconds)."""
  rng = np.random.default_rng(seed)

  def batch():
    return make_batch(rng, batch_size, rng.integers(min_length, max_length + 1, batch_size),
                      max_length, cfg.src_vocab_size - NUM_SPECIAL_IDS)

  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, 100, max(steps, 101),
                                                end_value=learning_rate / 20)
  tx = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(1.0))
  state = training.create_train_state(jax.random.key(seed), Seq2Seq(cfg), tx, schedule)
  step = jax.jit(training.train_step, donate_argnums=0)
  rng_train = jax.random.key(seed + 1)  # train_step folds in the step number
  losses, start = [], time.perf_counter()
  for i in range(steps):
    state, m = step(state, batch(), rng_train)
    if (i + 1) % 50 == 0 or i + 1 == steps:
      losses.append(float(m["loss_sum"] / m["tokens"]))
  return state.params, losses, time.perf_counter() - start


def evaluate(params: dict, cfg: ModelConfig, lengths: Sequence[int], per_length: int,
             max_length: int, seed: int = 1) -> dict[int, dict[str, float]]:
  """Greedy decoding of `per_length` fresh strings of each length: exact match and symbol
  accuracy (1 - edit distance / length), by length."""
  rng = np.random.default_rng(seed + 1000)  # another stream than training's
  lengths_N = np.repeat(np.asarray(lengths), per_length)
  data = make_batch(rng, len(lengths_N), lengths_N, max_length,
                    cfg.src_vocab_size - NUM_SPECIAL_IDS)
  opts = search_lib.SearchOptions(method="greedy", max_len_ratio=1.0, max_len_offset=2)
  out = search_lib.search_jit(params, cfg, jnp.asarray(data["src"]), opts, max_length + 2)
  tokens_NT, length_N = np.asarray(out.tokens_BRT[:, 0]), np.asarray(out.length_BR[:, 0])
  scores = {}
  for n in lengths:
    exact, symbols = [], []
    for i in np.flatnonzero(lengths_N == n):
      ref = [t for t in data["tgt_out"][i] if t not in (PAD_ID, EOS_ID)]
      hyp = [int(t) for t in tokens_NT[i, :length_N[i]] if t != EOS_ID]  # length counts EOS
      exact.append(hyp == ref)
      symbols.append(max(0.0, 1.0 - metrics.edit_distance(hyp, ref) / len(ref)))
    scores[int(n)] = {"exact_match": float(np.mean(exact)),
                      "symbol_accuracy": float(np.mean(symbols))}
  return scores


def plot(results: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for name, r in results["models"].items():
    lengths = sorted(int(n) for n in r["by_length"])
    for ax, key in zip(axes, ("exact_match", "symbol_accuracy"), strict=True):
      ax.plot(lengths, [100 * r["by_length"][n][key] for n in lengths], marker="o",
              label=f"{name} ({r['steps']} steps)")
  for ax, title in zip(axes, ("strings reversed exactly (%)", "symbols right (%)"), strict=True):
    ax.set(xlabel="input length (symbols)", ylabel=title, ylim=(-2, 102))
    ax.legend()
  fig.suptitle("Reversing random strings of "
               f"{results['min_length']}-{results['max_length']} symbols: greedy decoding by "
               f"input length (hidden {results['hidden_size']})")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run(steps: int, min_length: int, max_length: int, hidden_size: int, per_length: int,
        num_symbols: int = 10, learning_rate: float = 1e-2, batch_size: int = 64,
        seed: int = 0) -> dict:
  """Trains and evaluates both models; the JSON-able results."""
  lengths = sorted({min_length, *range(5, max_length + 1, 5), max_length})
  results = {"task": "reverse", "num_symbols": num_symbols, "batch_size": batch_size,
             "learning_rate": learning_rate, "min_length": min_length,
             "max_length": max_length, "hidden_size": hidden_size, "seed": seed,
             "per_length": per_length, "models": {}}
  for name, attention in (("no attention", "none"), ("attention (Luong)", "luong")):
    cfg = model_config(attention, hidden_size, num_symbols)
    params, losses, seconds = train(cfg, steps, min_length, max_length, batch_size, seed,
                                    learning_rate)
    results["models"][name] = {
        "attention": attention, "steps": steps, "train_seconds": round(seconds, 1),
        "final_loss": losses[-1],
        "by_length": evaluate(params, cfg, lengths, per_length, max_length, seed)}
  return results


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=500)
  p.add_argument("--min_length", type=int, default=2)
  p.add_argument("--max_length", type=int, default=30)
  p.add_argument("--hidden_size", type=int, default=64, help="decoder units (the encoder's "
                 "two directions have half each, so its final state has as many)")
  p.add_argument("--num_symbols", type=int, default=10, help="alphabet size")
  p.add_argument("--learning_rate", type=float, default=1e-2)
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--per_length", type=int, default=100, help="test strings per length")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=os.path.join(ROOT, "docs", "bottleneck"))
  a = p.parse_args(argv)
  results = run(a.steps, a.min_length, a.max_length, a.hidden_size, a.per_length,
                a.num_symbols, a.learning_rate, a.batch_size, a.seed)
  results["machine"] = (f"{decode_speed._cpu_model()}, {os.cpu_count()} CPU cores, "
                        f"jax {jax.__version__} on {jax.default_backend()}")
  with open(a.out + ".json", "w") as f:
    json.dump(results, f, indent=1)
  plot(results, a.out + ".png")
  for name, r in results["models"].items():
    row = "  ".join(f"{n}:{100 * s['exact_match']:.0f}%" for n, s in r["by_length"].items())
    print(f"{name}: {r['train_seconds']} s, loss {r['final_loss']:.3f}; exact match {row}")
  print(f"wrote {a.out}.png and {a.out}.json", file=sys.stderr)


if __name__ == "__main__":
  main()
