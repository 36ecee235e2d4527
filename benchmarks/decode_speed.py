"""Decoding speed and accuracy of a trained model: greedy, beam 5 (and more) on a dataset split.

  python benchmarks/decode_speed.py --workdir=/tmp/g2p [--split=test] [--beams 1 5 10]

Loads the run (config, tokenizers, best checkpoint), reads the split of its dataset, then for each
search setting decodes the whole split once to compile every shape, and times `--repeats` more
passes (median, min, max; sentences/s and output tokens/s). Each pass also gives the task metric
against all references (WER/PER or BLEU/chrF). Prints a Markdown table (the one in README.md) and
writes benchmarks/results/decode_speed.json with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax

import s2s_jax
from s2s_jax import metrics


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--split", default="test")
  parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--limit", type=int, default=0, help="decode only the first N examples")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                    "decode_speed.json"))
  args = parser.parse_args()

  model = s2s_jax.load(args.workdir)
  pairs = model.split(args.split)
  sources, _ = pairs.columns()
  references = pairs.all_references()
  if args.limit:
    sources, references = sources[:args.limit], references[:args.limit]
  metric = model.config["train"]["eval_metric"]

  rows = []
  for beam in args.beams:
    options = {"beam_size": beam, "batch_size": args.batch_size}
    start = time.perf_counter()
    model.decode(sources, **options)  # compiles every shape
    first = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      results = model.decode(sources, **options)
      times.append(time.perf_counter() - start)
    texts = [r.text for r in results]
    tokens = sum(len(r.hypotheses[0].ids) + 1 for r in results if r.hypotheses)
    median = statistics.median(times)
    rows.append({
        "search": "greedy" if beam == 1 else f"beam {beam}", "beam_size": beam,
        "sentences": len(sources), "first_pass_seconds": first, "seconds_median": median,
        "seconds_min": min(times), "seconds_max": max(times),
        "sentences_per_second": len(sources) / median, "output_tokens_per_second": tokens / median,
        **metrics.task_scores(metric, texts, references)})
    print(json.dumps(rows[-1]), flush=True)

  report = {
      "workdir": os.path.abspath(args.workdir), "checkpoint_step": model.step,
      "split": args.split, "batch_size": args.batch_size, "repeats": args.repeats,
      "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                  "jax": jax.__version__, "backend": jax.default_backend()},
      "rows": rows}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1)
  keys = [k for k in ("wer", "per", "bleu", "chrf") if k in rows[0]]
  print(f"\n| search | sentences/s | output tokens/s | first pass (compile) s | "
        f"{' | '.join(keys)} |")
  print("|---|---|---|---|" + "---|" * len(keys))
  for r in rows:
    scores = " | ".join(f"{100 * r[k]:.1f}%" if k in ("wer", "per") else f"{r[k]:.1f}"
                        for k in keys)
    print(f"| {r['search']} | {r['sentences_per_second']:.0f} | "
          f"{r['output_tokens_per_second']:.0f} | {r['first_pass_seconds']:.1f} | {scores} |")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


if __name__ == "__main__":
  main()
