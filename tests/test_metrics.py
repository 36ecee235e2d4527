"""Task metrics against hand-computed cases."""

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
