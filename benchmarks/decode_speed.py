"""Decoding speed and accuracy of a trained model: greedy, beam 5 (and more) on a dataset split.

  python benchmarks/decode_speed.py --workdir=/tmp/g2p [--split=test] [--beams 1 5 10]
  python benchmarks/decode_speed.py --workdir=/tmp/asr --ctc_weights 0.3 0.5 --ctc_greedy
      # a joint CTC-attention model: plain beams, joint beams and the CTC best path, one run

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
  parser.add_argument("--ctc_weights", type=float, nargs="*", default=[],
                      help="also time joint CTC-attention beams with these weights")
  parser.add_argument("--ctc_greedy", action="store_true", help="also time method=ctc_greedy")
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
  for name, options in _settings(args, model):
    rows.append({"search": name, **options, "sentences": len(sources),
                 **_time(model, sources, references, metric, args, options)})
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
  keys = [k for k in ("wer", "per", "cer", "bleu", "chrf") if k in rows[0]]
  print(f"\n| search | sentences/s | output tokens/s | first pass (compile) s | "
        f"{' | '.join(keys)} |")
  print("|---|---|---|---|" + "---|" * len(keys))
  for r in rows:
    scores = " | ".join(f"{100 * r[k]:.1f}%" if k in ("wer", "per", "cer") else f"{r[k]:.1f}"
                        for k in keys)
    print(f"| {r['search']} | {r['sentences_per_second']:.0f} | "
          f"{r['output_tokens_per_second']:.0f} | {r['first_pass_seconds']:.1f} | {scores} |")


def _settings(args: argparse.Namespace, model: s2s_jax.Model) -> list[tuple[str, dict]]:
  """(name, decode options) of each timed search: the beams (attention only), then the joint
  beams and the CTC best path when asked."""
  plain = {"ctc_weight": 0.0} if model.model_config.has_ctc else {}
  settings = [("greedy" if beam == 1 else f"beam {beam}", {"beam_size": beam, **plain})
              for beam in args.beams]
  settings += [(f"joint beam {beam}, ctc_weight {w}", {"beam_size": beam, "ctc_weight": w})
               for w in args.ctc_weights for beam in args.beams if beam > 1]
  if args.ctc_greedy:
    settings.append(("ctc_greedy", {"method": "ctc_greedy"}))
  return settings


def _time(model: s2s_jax.Model, sources: list, references: list, metric: str,
          args: argparse.Namespace, options: dict) -> dict:
  """One setting: a first pass (compiles every shape), then `repeats` timed passes."""
  options = {**options, "batch_size": args.batch_size}
  start = time.perf_counter()
  model.decode(sources, **options)
  first = time.perf_counter() - start
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    results = model.decode(sources, **options)
    times.append(time.perf_counter() - start)
  texts = [r.text for r in results]
  tokens = sum(len(r.hypotheses[0].ids) + 1 for r in results if r.hypotheses)
  median = statistics.median(times)
  return {"first_pass_seconds": first, "seconds_median": median, "seconds_min": min(times),
          "seconds_max": max(times), "sentences_per_second": len(sources) / median,
          "output_tokens_per_second": tokens / median,
          **metrics.task_scores(metric, texts, references)}


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
