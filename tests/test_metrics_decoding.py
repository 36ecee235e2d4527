"""Task metrics against hand-computed cases, and greedy search against a scripted step function."""

import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import decoding, metrics
from s2s_jax.special_ids import EOS_ID, PAD_ID


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


def test_greedy_follows_the_argmax_and_pads_after_eos():
  # Row r emits tokens 5, 6, ... and EOS after r + 1 tokens; the carry counts steps.
  vocab = 12

  def step_fn(carry, token_B):
    del token_B
    t_B, rows_B = carry
    want_B = jnp.where(t_B > rows_B, EOS_ID, 5 + t_B)
    return jax_one_hot(want_B, vocab), (t_B + 1, rows_B)

  tokens = decoding.greedy(step_fn, (jnp.zeros(3, jnp.int32), jnp.arange(3)), 3, max_length=6)
  np.testing.assert_array_equal(np.asarray(tokens), [
      [5, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
      [5, 6, EOS_ID, PAD_ID, PAD_ID, PAD_ID],
      [5, 6, 7, EOS_ID, PAD_ID, PAD_ID]])


def test_greedy_cuts_rows_without_eos_at_max_length():
  tokens = decoding.greedy(lambda c, t: (jax_one_hot(jnp.full(2, 7), 9), c), (), 2, max_length=4)
  np.testing.assert_array_equal(np.asarray(tokens), [[7] * 4] * 2)


def jax_one_hot(ids, vocab):
  return 10.0 * (jnp.arange(vocab)[None, :] == ids[:, None])
