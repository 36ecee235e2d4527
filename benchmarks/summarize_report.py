"""The summarization recipe's report: trained runs of configs/summarize_debian.py decoded on the
test split, with ROUGE, the repeated-trigram rate, output lengths and example outputs.

  python benchmarks/summarize_report.py --run "no copy=/tmp/sum_b" --run "copy=/tmp/sum_c" \\
      --run "copy + coverage=/tmp/sum_d" [--beam 1,5]

Each run is decoded from its best (validation) checkpoint with greedy search and beam 5
(alpha 0, or with `--alphas` the length penalty of best validation ROUGE-L; the run's length
limit), scored against every reference of each source (ROUGE F1 with
stemming, the best reference; `s2s_jax.metrics`). Examples: the test sources at the 10th, 50th and
90th percentile of the last run's ROUGE-L (so bad, middling and good ones, chosen by a fixed
rule), with every run's output beside the references. Writes
benchmarks/results/summarize_debian.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from s2s_jax import inference, metrics  # noqa: E402
from s2s_jax.data import datasets  # noqa: E402


def _split(workdir: str, which: str = "test_split") -> tuple[list[str], list[list[str]]]:
  with open(os.path.join(workdir, "config.json")) as f:
    data = json.load(f)["data"]
  dataset = datasets.open_dataset(data["dataset"], data_dir=data["data_dir"] or None,
                                  options=data["options"])
  sources, references = [], []
  for example in dataset.builder.as_data_source(data[which]):
    sources.append(example["source"].decode("utf-8"))
    references.append([r.decode("utf-8") for r in example["references"]])
  return sources, references


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--run", action="append", required=True, help="name=workdir")
  parser.add_argument("--beam", default="1,5", help="beam sizes (1 = greedy)")
  parser.add_argument("--alphas", default="", help="beam length penalties to choose from on "
                      "validation by ROUGE-L (e.g. 0,0.6,1.0); the chosen one is scored on test")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                    "summarize_debian.json"))
  args = parser.parse_args()
  runs = dict(r.split("=", 1) for r in args.run)
  sources, references = _split(next(iter(runs.values())))
  alphas = [float(a) for a in args.alphas.split(",")] if args.alphas else []
  if alphas:
    val_sources, val_refs = _split(next(iter(runs.values())), "eval_split")
  report = {"test_sources": len(sources), "runs": {}, "examples": []}
  outputs = {}
  for name, workdir in runs.items():
    model = inference.load(workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    evals = [{k: v for k, v in r.items() if k == "step" or k.startswith("eval_")}
             for r in records if "eval_loss" in r]
    entry = {"workdir": workdir, "validation": evals}
    for beam in map(int, args.beam.split(",")):
      alpha = 0.0
      if beam > 1 and alphas:
        tuned = {a: metrics.rouge_scores([r.text for r in model.decode(
            val_sources, beam_size=beam, alpha=a)], val_refs)["rougeL"] for a in alphas}
        alpha = max(tuned, key=tuned.get)
        entry[f"beam{beam}_validation_rougeL_by_alpha"] = tuned
      texts = [r.text for r in model.decode(sources, beam_size=beam, alpha=alpha)]
      scores = metrics.task_scores("rougeL", texts, references)
      scores["mean_words"] = sum(len(t.split()) for t in texts) / len(texts)
      scores["alpha"] = alpha
      entry["greedy" if beam == 1 else f"beam{beam}"] = scores
      outputs[name] = texts
    report["runs"][name] = entry
    print(name, {k: v for k, v in entry.items() if k not in ("validation", "workdir")})
  last = list(outputs)[-1]
  per_example = [metrics.rouge_scores([t], [refs])["rougeL"]
                 for t, refs in zip(outputs[last], references, strict=True)]
  order = sorted(range(len(sources)), key=lambda i: (per_example[i], i))
  for q in (0.1, 0.5, 0.9):
    i = order[int(q * (len(order) - 1))]
    report["examples"].append({"percentile": int(100 * q), "source": sources[i],
                               "references": references[i],
                               "outputs": {n: o[i] for n, o in outputs.items()},
                               f"rougeL_{last}": per_example[i]})
  with open(args.out, "w") as f:
    json.dump(report, f, indent=1, ensure_ascii=False)
  print("\n| test | search | ROUGE-1 | ROUGE-2 | ROUGE-L | repeated trigrams % | words |")
  print("|---|---|---|---|---|---|---|")
  for name, entry in report["runs"].items():
    for search, s in entry.items():
      if isinstance(s, dict) and "rouge1" in s:
        print(f"| {name} | {search} | {s['rouge1']:.1f} | {s['rouge2']:.1f} | "
              f"{s['rougeL']:.1f} | {s['repeated_trigrams']:.2f} | {s['mean_words']:.1f} |")
  print(args.out)


if __name__ == "__main__":
  main()
