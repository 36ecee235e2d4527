"""Task metrics: word and phone error rates for G2P (multi-reference), BLEU and chrF (sacrebleu)."""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
  """Levenshtein distance between two token sequences (unit insert, delete, substitute)."""
  previous = list(range(len(b) + 1))
  for i, x in enumerate(a, start=1):
    current = [i]
    for j, y in enumerate(b, start=1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
    previous = current
  return previous[-1]


def g2p_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]
               ) -> dict[str, float]:
  """WER and PER of space-separated phone strings against each word's references.

  A word is right if the prediction equals any reference (WER = wrong words / words). PER sums,
  per word, the edit distance to the closest reference over the length of that reference.
  """
  if len(predictions) != len(references) or not predictions:
    raise ValueError(f"need equally many predictions and references, got {len(predictions)} "
                     f"and {len(references)}")
  wrong = errors = length = 0
  for prediction, refs in zip(predictions, references, strict=True):
    hyp = prediction.split()
    distance, ref = min((edit_distance(hyp, r.split()), len(r.split())) for r in refs)
    wrong += distance > 0
    errors += distance
    length += ref
  return {"wer": wrong / len(predictions), "per": errors / max(length, 1)}


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """Corpus BLEU and chrF (sacrebleu defaults) of detokenized text."""
  refs = [list(references)]
  return {"bleu": sacrebleu.corpus_bleu(list(hypotheses), refs).score,
          "chrf": sacrebleu.corpus_chrf(list(hypotheses), refs).score}


def task_scores(metric: str, predictions: Sequence[str], references: Sequence[Sequence[str]]
                ) -> dict[str, float]:
  """The scores a task reports, chosen by its metric: WER and PER for 'wer' / 'per' (any of a
  word's references counts), else BLEU and chrF against each sentence's first reference."""
  if metric in ("wer", "per"):
    return g2p_scores(predictions, references)
  return translation_scores(predictions, [refs[0] for refs in references])
