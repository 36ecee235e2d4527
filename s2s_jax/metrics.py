"""Task metrics: word and phone error rates for G2P (multi-reference), word and character error
rates for speech recognition, BLEU and chrF (sacrebleu), ROUGE (rouge-score).

Edit distances come from rapidfuzz (C++): a Python double loop takes seconds per thousand
sentences, which evaluation sets of speech corpora would feel.
"""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu
from rapidfuzz.distance import Levenshtein


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
  """Levenshtein distance between two token sequences (unit insert, delete, substitute)."""
  return Levenshtein.distance(a, b)


def asr_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """Corpus word and character error rates of transcripts: the summed edit distances over the
  summed reference lengths, in words (split on whitespace) and in characters (spaces included,
  as jiwer counts them).

  Raises:
    ValueError: the two lists differ in length, or are empty.
  """
  if len(hypotheses) != len(references) or not hypotheses:
    raise ValueError(f"need equally many hypotheses and references, got {len(hypotheses)} and "
                     f"{len(references)}")
  word_errors = char_errors = words = chars = 0
  for hyp, ref in zip(hypotheses, references, strict=True):
    word_errors += Levenshtein.distance(hyp.split(), ref.split())
    char_errors += Levenshtein.distance(hyp, ref)
    words += len(ref.split())
    chars += len(ref)
  return {"wer": word_errors / max(words, 1), "cer": char_errors / max(chars, 1)}


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


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]
                 ) -> dict[str, float]:
  """Mean ROUGE-1 / 2 / L F1 x 100 (Google's `rouge-score`, Porter stemming, as summarization
  papers report it), each prediction against its best-matching reference."""
  from rouge_score import rouge_scorer  # summarization only
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  totals = dict.fromkeys(ROUGE_TYPES, 0.0)
  for prediction, refs in zip(predictions, references, strict=True):
    scores = scorer.score_multi(list(refs), prediction)
    for kind in ROUGE_TYPES:
      totals[kind] += scores[kind].fmeasure
  n = max(len(predictions), 1)
  return {kind: 100.0 * total / n for kind, total in totals.items()}


def repeated_ngram_rate(predictions: Sequence[str], n: int = 3) -> float:
  """Percent of the predictions' word n-grams that repeat an n-gram earlier in the same
  prediction (See et al. 2017 count repeated trigrams; coverage is meant to lower it)."""
  repeats = total = 0
  for prediction in predictions:
    words = prediction.split()
    seen = set()
    for i in range(len(words) - n + 1):
      gram = tuple(words[i:i + n])
      repeats += gram in seen
      seen.add(gram)
      total += 1
  return 100.0 * repeats / max(total, 1)


def task_scores(metric: str, predictions: Sequence[str], references: Sequence[Sequence[str]]
                ) -> dict[str, float]:
  """The scores a task reports, chosen by its metric: G2P's WER and PER for 'wer' / 'per' (any
  of a word's references counts), speech recognition's WER and CER for 'cer' (`asr_scores`
  against the first reference), summarization's ROUGE-1 / 2 / L for 'rouge*' (the best of the
  references) with the repeated-trigram rate, else BLEU and chrF against each sentence's first
  reference."""
  if metric in ROUGE_TYPES:
    return {**rouge_scores(predictions, references),
            "repeated_trigrams": repeated_ngram_rate(predictions)}
  if metric in ("wer", "per"):
    return g2p_scores(predictions, references)
  if metric == "cer":
    return asr_scores(predictions, [refs[0] for refs in references])
  return translation_scores(predictions, [refs[0] for refs in references])
