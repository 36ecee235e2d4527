"""The extractive baselines of the debian_descriptions summarization corpus: the source's first
N words (N chosen on validation by ROUGE-L) and its first sentence, scored on test.

  python benchmarks/summarize_lead.py [--data_dir=~/tensorflow_datasets] [--whole_text]

Prints a Markdown table and writes benchmarks/results/summarize_lead.json (every N's
validation scores, and the test scores of the chosen N and of the first sentence).
"""

from __future__ import annotations

import argparse
import json
import os
import re

from s2s_jax import metrics
from s2s_jax.data import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def first_words(text: str, n: int) -> str:
  return " ".join(text.split()[:n])


def first_sentence(text: str) -> str:
  return _SENTENCE_END.split(text, maxsplit=1)[0]


def _split(dataset: datasets.Dataset, split: str) -> tuple[list[str], list[list[str]]]:
  sources, references = [], []
  for example in dataset.builder.as_data_source(split):
    sources.append(example["source"].decode("utf-8"))
    references.append([r.decode("utf-8") for r in example["references"]])
  return sources, references


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--whole_text", action="store_true")
  parser.add_argument("--max_words", type=int, default=30)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                    "summarize_lead.json"))
  args = parser.parse_args()
  dataset = datasets.open_dataset("debian_descriptions", data_dir=args.data_dir,
                                  options={"whole_text": args.whole_text})
  val_sources, val_refs = _split(dataset, "validation")
  by_n = {n: metrics.rouge_scores([first_words(s, n) for s in val_sources], val_refs)
          for n in range(1, args.max_words + 1)}
  best_n = max(by_n, key=lambda n: by_n[n]["rougeL"])
  test_sources, test_refs = _split(dataset, "test")
  test = {f"lead-{best_n}": metrics.rouge_scores(
              [first_words(s, best_n) for s in test_sources], test_refs),
          "first sentence": metrics.rouge_scores(
              [first_sentence(s) for s in test_sources], test_refs)}
  print(f"lead-N on validation ({len(val_sources)} sources): best N = {best_n} "
        f"(ROUGE-L {by_n[best_n]['rougeL']:.1f})")
  print(f"\n| test ({len(test_sources)} sources) | ROUGE-1 | ROUGE-2 | ROUGE-L |")
  print("|---|---|---|---|")
  for name, s in test.items():
    print(f"| {name} | {s['rouge1']:.1f} | {s['rouge2']:.1f} | {s['rougeL']:.1f} |")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"whole_text": args.whole_text, "validation_by_n": by_n, "best_n": best_n,
               "test": test, "counts": dict(dataset.builder.info.metadata["counts"])}, f,
              indent=1)


if __name__ == "__main__":
  main()
