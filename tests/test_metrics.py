"""Task metrics against hand-computed cases."""

import numpy as np
import pytest

from s2s_jax import metrics


@pytest.mark.parametrize(("a", "b", "distance"), [
    ("", "", 0), ("abc", "abc", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3),
    ("flaw", "lawn", 2), ("abcd", "acbd", 2),
])
def test_edit_distance_matches_hand_counts(a, b, distance):
  assert metrics.edit_distance(list(a), list(b)) == distance


def test_g2p_scores_take_the_closest_of_several_references():
  predictions = ["T AH M EY T OW", "K AE T", "D AO G Z"]
  references = [["T AH M EY T OW", "T AH M AA T OW"], ["K AE T"], ["D AO G", "D AA G"]]
  scores = metrics.g2p_scores(predictions, references)
  assert scores["wer"] == pytest.approx(1 / 3)
  assert scores["per"] == pytest.approx(1 / (6 + 3 + 3))  # one insertion against "D AO G"


def test_g2p_scores_reject_mismatched_lengths():
  with pytest.raises(ValueError, match="equally many"):
    metrics.g2p_scores(["A"], [])


def test_translation_scores_are_100_for_exact_and_lower_otherwise():
  refs = ["the cat sat on the mat", "a dog ran in the park today"]
  perfect = metrics.translation_scores(refs, refs)
  assert perfect == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
  worse = metrics.translation_scores(["the cat sat on a mat", "a dog ran"], refs)
  assert worse["bleu"] < 100 and worse["chrf"] < 100


def _reference_distance(a, b) -> int:
  """Levenshtein distance by the textbook dynamic program, written out in NumPy."""
  d = np.zeros((len(a) + 1, len(b) + 1), int)
  d[:, 0], d[0, :] = np.arange(len(a) + 1), np.arange(len(b) + 1)
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
  return int(d[-1, -1])


def test_edit_distance_equals_the_dynamic_program_on_random_token_lists():
  rng = np.random.default_rng(0)
  for _ in range(200):
    a = [str(t) for t in rng.integers(0, 4, rng.integers(0, 9))]
    b = [str(t) for t in rng.integers(0, 4, rng.integers(0, 9))]
    assert metrics.edit_distance(a, b) == _reference_distance(a, b), (a, b)


def test_asr_scores_sum_edit_distances_over_reference_lengths():
  hyps = ["the cat sat", "a dog", ""]
  refs = ["the cat sat down", "the dog", "hi"]
  scores = metrics.asr_scores(hyps, refs)
  words = [_reference_distance(h.split(), r.split()) for h, r in zip(hyps, refs, strict=True)]
  chars = [_reference_distance(h, r) for h, r in zip(hyps, refs, strict=True)]
  assert words == [1, 1, 1] and chars == [5, 3, 2]
  assert scores == {"wer": pytest.approx(3 / 7), "cer": pytest.approx(10 / (16 + 7 + 2))}
  with pytest.raises(ValueError, match="equally many"):
    metrics.asr_scores(["a"], [])
  # Training's and decode.py's metric 'cer' is these scores against each first reference.
  assert metrics.task_scores("cer", hyps, [[r, "ignored"] for r in refs]) == scores


def test_g2p_scores_equal_the_dynamic_program_scores_on_random_cases():
  # The library edit distance leaves G2P scores as the hand-written loop computed them.
  rng = np.random.default_rng(1)
  phones = ["AA", "B", "K", "T", "IY"]
  preds, refs = [], []
  for _ in range(100):
    preds.append(" ".join(rng.choice(phones, rng.integers(1, 6))))
    refs.append([" ".join(rng.choice(phones, rng.integers(1, 6)))
                 for _ in range(rng.integers(1, 3))])
  wrong = errors = length = 0
  for p, rs in zip(preds, refs, strict=True):
    d, n = min((_reference_distance(p.split(), r.split()), len(r.split())) for r in rs)
    wrong, errors, length = wrong + (d > 0), errors + d, length + n
  assert metrics.g2p_scores(preds, refs) == {"wer": pytest.approx(wrong / 100),
                                             "per": pytest.approx(errors / length)}
