"""Input pipeline throughput on CMUdict G2P, side by side with a training step it must feed.

  python benchmarks/input_pipeline.py [--data_dir /tmp/tfds] [--batches 400]

Measures, in one run on this machine: the one-time costs (prepare the tfds dataset, read the
train split, train the tokenizers, tokenize), then batches from the grain pipeline (in process,
and with 2 worker processes), then the jitted forward + backward + SGD update of a G2P-sized
LSTM + attention model on the same batches. Prints a Markdown table (the one in README.md) and
writes benchmarks/results/input_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import jax

from s2s_jax import ModelConfig, Seq2Seq, mean_cross_entropy
from s2s_jax import data as d


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def _rate(iterator, n: int) -> tuple[float, float, float]:
  """(batches/s, examples/s, real tokens/s) over n batches after a warm-up batch."""
  next(iterator)
  examples = tokens = 0
  start = time.perf_counter()
  for _ in range(n):
    batch = next(iterator)
    examples += int((batch["index"] >= 0).sum())
    tokens += int((batch["src"] > 0).sum() + (batch["tgt_out"] > 0).sum())
  seconds = time.perf_counter() - start
  return n / seconds, examples / seconds, tokens / seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None,
                      help="tfds data dir; default: a fresh temporary one, so preparing is timed")
  parser.add_argument("--batches", type=int, default=400)
  parser.add_argument("--max_tokens", type=int, default=4096)
  parser.add_argument("--train_steps", type=int, default=40)
  args = parser.parse_args()
  rows = []

  data_dir = args.data_dir or tempfile.mkdtemp()
  ds, t_prepare = _timed(lambda: d.open_dataset("cmudict", data_dir=data_dir))
  train = ds.split("train")
  (sources, targets), t_read = _timed(train.columns)
  workdir = tempfile.mkdtemp()
  (src_tok, tgt_tok), t_vocab = _timed(lambda: d.get_or_train_tokenizers(
      workdir, d.TokenizerSpec("char"), d.TokenizerSpec("word"), sources, targets))
  split, t_tokenize = _timed(
      lambda: d.TokenizedSplit.build(zip(sources, targets, strict=True), src_tok, tgt_tok))
  n = len(train)
  rows += [("prepare the tfds dataset (once per data_dir)", f"{t_prepare:.1f} s", ""),
           ("read train split (tfds data source)", f"{t_read:.1f} s", f"{n / t_read:,.0f} ex/s"),
           ("train char + phone vocabularies", f"{t_vocab:.1f} s", ""),
           ("tokenize train split", f"{t_tokenize:.1f} s", f"{n / t_tokenize:,.0f} ex/s")]

  config = d.BatchingConfig(max_tokens=args.max_tokens)
  pipeline = d.Pipeline(split, config, shuffle=True, seed=0)
  results = {}
  for workers in (0, 2):
    it = pipeline.iterator(num_workers=workers)
    results[workers] = _rate(it, args.batches)
    label = "in process (2 threads)" if not workers else f"{workers} worker processes"
    b, e, t = results[workers]
    rows.append((f"pipeline batches, {label}", f"{b:,.0f} batches/s", f"{e:,.0f} ex/s, "
                 f"{t:,.0f} tok/s"))

  model_cfg = ModelConfig(src_vocab_size=src_tok.vocab_size, tgt_vocab_size=tgt_tok.vocab_size,
                          cell="lstm", embed_size=128, hidden_size=256, encoder_hidden_size=128,
                          bidirectional=True, attention="luong", input_feeding=True)
  model = Seq2Seq(model_cfg)
  it = pipeline.iterator()
  batches = [next(it) for _ in range(args.train_steps)]
  params = model.init(jax.random.key(0), batches[0]["src"][:2], batches[0]["tgt_in"][:2])

  @jax.jit
  def step(params, batch):
    def loss_fn(p):
      logits = model.apply(p, batch["src"], batch["tgt_in"])
      return mean_cross_entropy(logits, batch["tgt_out"])
    loss, grads = jax.value_and_grad(loss_fn)(params)
    return jax.tree.map(lambda w, g: w - 0.1 * g, params, grads), loss

  for batch in batches:  # compile every bucket shape first
    jax.block_until_ready(step(params, batch))
  examples = sum(int((b["index"] >= 0).sum()) for b in batches)
  start = time.perf_counter()
  for batch in batches:
    params, loss = step(params, batch)
  jax.block_until_ready(loss)
  train_rate = examples / (time.perf_counter() - start)
  rows.append(("train step (LSTM 256 + Luong attention, jit, CPU)", "",
               f"{train_rate:,.0f} ex/s"))
  ratio = results[0][1] / train_rate
  rows.append(("pipeline (in process) / train step", "", f"{ratio:,.0f}x"))

  hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
             f"jax {jax.__version__} on {jax.devices()[0].platform}"
  print(f"\nInput pipeline, CMUdict train split ({n:,} examples, max_tokens="
        f"{args.max_tokens}); {hardware}\n")
  print("| step | time | throughput |\n|---|---|---|")
  for name, time_, rate in rows:
    print(f"| {name} | {time_} | {rate} |")
  print(f"\n{pipeline.stats.summary()}")
  out = os.path.join(os.path.dirname(__file__), "results", "input_pipeline.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump({"hardware": hardware, "rows": rows, "stats": pipeline.stats.summary()}, f, indent=1)


if __name__ == "__main__":
  main()
