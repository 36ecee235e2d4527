"""A split's task scores by source length, for one or more trained runs: the table and the figure
of Bahdanau et al. (2015, Figure 2), for our models.

  python benchmarks/length_analysis.py --workdir=/tmp/bible_att,/tmp/bible_noatt --split=test \
      --labels="attention,no attention" --out=docs/length_bible
  python benchmarks/length_analysis.py --workdir=/tmp/g2p --split=test --beam_size=5

Each run decodes the split (its best checkpoint, the search given by the flags) once; the
sentences are grouped by their source length in the run's own source tokens (what its encoder
reads), and each group is scored with the run's task metric (WER and PER for G2P, corpus BLEU and
chrF for translation: `s2s_jax.metrics.task_scores`). Several runs must share a dataset and a
source tokenizer, so that their groups hold the same sentences. Writes <out>.md (the table),
<out>.json and <out>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import s2s_jax  # noqa: E402
from s2s_jax import metrics  # noqa: E402


def bucket_edges(lengths: Sequence[int], num_buckets: int) -> list[int]:
  """Upper edges of up to `num_buckets` length groups of roughly equal size (each group is
  `previous edge < length <= edge`); the last edge is the longest length."""
  qs = np.quantile(np.asarray(lengths), np.linspace(0, 1, num_buckets + 1)[1:])
  return sorted({int(np.ceil(q)) for q in qs})


def scores_by_length(predictions: Sequence[str], references: Sequence[Sequence[str]],
                     lengths: Sequence[int], edges: Sequence[int], metric: str) -> list[dict]:
  """One row per length group: its range, size and `metrics.task_scores`."""
  rows, low = [], 0
  lengths_N = np.asarray(lengths)
  for edge in edges:
    members = np.flatnonzero((lengths_N > low) & (lengths_N <= edge))
    if len(members):
      scores = metrics.task_scores(metric, [predictions[i] for i in members],
                                   [references[i] for i in members])
      rows.append({"min_length": low + 1, "max_length": int(edge), "sentences": len(members),
                   **{k: float(v) for k, v in scores.items()}})
    low = edge
  return rows


def analyse(workdirs: Sequence[str], labels: Sequence[str], split: str, num_buckets: int,
            search: dict) -> dict:
  """Decodes `split` with each run and scores it by source length."""
  models = [s2s_jax.load(w) for w in workdirs]
  pairs = models[0].split(split)
  sources, references = pairs.columns()[0], pairs.all_references()
  lengths = [len(models[0].source_tokenizer.encode(s)) for s in sources]
  for w, m in zip(workdirs[1:], models[1:], strict=True):
    if [len(m.source_tokenizer.encode(s)) for s in sources] != lengths:
      raise ValueError(f"{w} reads the sources with another tokenizer than {workdirs[0]}: "
                       "their length groups would differ")
  edges = bucket_edges(lengths, num_buckets)
  metric = models[0].config["train"]["eval_metric"]
  metric = metric if metric in ("wer", "per") else "bleu"
  runs = {}
  for label, w, m in zip(labels, workdirs, models, strict=True):
    predictions = [r.text for r in m.decode(sources, **search)]
    runs[label] = {"workdir": w, "step": m.step,
                   "overall": metrics.task_scores(metric, predictions, references),
                   "by_length": scores_by_length(predictions, references, lengths, edges, metric)}
  return {"split": split, "sentences": len(sources), "search": search, "metric": metric,
          "length_unit": "source tokens (the run's tokenizer, EOS not counted)", "runs": runs}


def _score_keys(results: dict) -> list[str]:
  """The scores `metrics.task_scores` gave: wer, per or bleu, chrf."""
  return list(next(iter(results["runs"].values()))["overall"])


def markdown(results: dict) -> str:
  """The table: one row per length group, one column per run and score."""
  keys = _score_keys(results)
  runs = results["runs"]
  header = ["source tokens", "sentences"] + [f"{label} {k.upper()}" for label in runs
                                             for k in keys]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  first = next(iter(runs.values()))["by_length"]
  for g, row in enumerate(first):
    cells = [f"{row['min_length']}-{row['max_length']}", str(row["sentences"])]
    for r in runs.values():
      scores = r["by_length"][g]
      cells += [_fmt(k, scores[k]) for k in keys]
    lines.append("| " + " | ".join(cells) + " |")
  cells = ["all", str(results["sentences"])]
  cells += [_fmt(k, r["overall"][k]) for r in runs.values() for k in keys]
  lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _fmt(key: str, value: float) -> str:
  return f"{100 * value:.1f}%" if key in ("wer", "per") else f"{value:.1f}"


def plot(results: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  keys = _score_keys(results)
  scale = 100.0 if results["metric"] in ("wer", "per") else 1.0
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for label, r in results["runs"].items():
    groups = r["by_length"]
    x = [(g["min_length"] + g["max_length"]) / 2 for g in groups]
    for ax, k in zip(axes, keys, strict=True):
      ax.plot(x, [scale * g[k] for g in groups], marker="o", label=label)
  for ax, k in zip(axes, keys, strict=True):
    ax.set(xlabel="source length (tokens; middle of each group)",
           ylabel=f"{k.upper()}{' (%)' if scale == 100 else ''}")
    ax.legend()
  fig.suptitle(f"{results['split']} split ({results['sentences']} sentences) by source length")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True, help="trained runs, comma-separated")
  p.add_argument("--labels", default="", help="a name per run, comma-separated (default: "
                 "the workdirs' base names)")
  p.add_argument("--split", default="test")
  p.add_argument("--buckets", type=int, default=6, help="length groups of ~equal size")
  p.add_argument("--beam_size", type=int, default=5, help="1 = greedy")
  p.add_argument("--out", default="length_analysis", help="writes <out>.md, .json and .png")
  a = p.parse_args(argv)
  workdirs = a.workdir.split(",")
  labels = a.labels.split(",") if a.labels else [os.path.basename(w.rstrip("/")) for w in workdirs]
  if len(labels) != len(workdirs):
    p.error(f"--labels has {len(labels)} names for {len(workdirs)} workdirs")
  search = {"method": "beam", "beam_size": a.beam_size}
  results = analyse(workdirs, labels, a.split, a.buckets, search)
  table = markdown(results)
  with open(a.out + ".md", "w") as f:
    f.write(table)
  with open(a.out + ".json", "w") as f:
    json.dump(results, f, indent=1)
  plot(results, a.out + ".png")
  print(table)
  print(f"wrote {a.out}.md, .json and .png", file=sys.stderr)


if __name__ == "__main__":
  main()
