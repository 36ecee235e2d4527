"""Losses and accuracy against hand computations."""

import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import PAD_ID, cross_entropy, mean_cross_entropy, token_accuracy
from s2s_jax.losses import token_cross_entropy
from tests.reference import log_softmax


def test_padded_positions_contribute_nothing():
  r = np.random.default_rng(0)
  logits = r.normal(size=(2, 4, 7)).astype(np.float32)
  targets = np.array([[4, 5, 2, PAD_ID], [6, 2, PAD_ID, PAD_ID]])
  total, count = cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
  lp = log_softmax(logits)
  want = -sum(lp[b, t, targets[b, t]] for b in range(2) for t in range(4) if targets[b, t])
  assert count == 5
  np.testing.assert_allclose(total, want, rtol=1e-5)
  # Whatever the logits at padded positions hold, the loss is the same.
  logits[targets == PAD_ID] = 1e4 * r.normal(size=((targets == PAD_ID).sum(), 7))
  total2, _ = cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
  np.testing.assert_allclose(total2, total, rtol=1e-6)
  np.testing.assert_array_equal(token_cross_entropy(jnp.asarray(logits),
                                                    jnp.asarray(targets))[targets == 0], 0.0)
  np.testing.assert_allclose(mean_cross_entropy(jnp.asarray(logits), jnp.asarray(targets)),
                             want / 5, rtol=1e-5)


def test_label_smoothing_matches_hand_computation():
  logits = np.array([[[2.0, 0.5, -1.0, 0.0, 1.0]]], np.float32)
  target, eps = 4, 0.1
  p = np.exp(logits[0, 0]) / np.exp(logits[0, 0]).sum()
  q = np.full(5, eps / 4)  # eps spread over the V - 1 = 4 other tokens
  q[target] = 1 - eps
  want = -(q * np.log(p)).sum()
  total, count = cross_entropy(jnp.asarray(logits), jnp.array([[target]]), label_smoothing=eps)
  assert count == 1
  np.testing.assert_allclose(total, want, rtol=1e-6)


def test_label_smoothing_ignores_padding_too():
  logits = np.array([[[0.3, -1.0, 2.0, 0.5, 0.0, 1.5], [9.0, 0, 0, 0, 0, 0]]], np.float32)
  total, count = cross_entropy(jnp.asarray(logits), jnp.array([[5, PAD_ID]]), label_smoothing=0.2)
  lp = log_softmax(logits[0, 0])
  want = -(0.8 * lp[5] + 0.2 / 5 * (lp.sum() - lp[5]))
  np.testing.assert_allclose(total, want, rtol=1e-6)
  assert count == 1


def test_mean_of_an_all_padding_batch_is_zero_not_nan():
  assert mean_cross_entropy(jnp.ones((1, 3, 5)), jnp.zeros((1, 3), jnp.int32)) == 0.0


def test_invalid_label_smoothing_is_rejected():
  with pytest.raises(ValueError, match="label_smoothing=1.0 is invalid"):
    token_cross_entropy(jnp.zeros((1, 1, 5)), jnp.ones((1, 1), jnp.int32), label_smoothing=1.0)


def test_token_accuracy_counts_only_real_tokens():
  logits = np.full((1, 4, 6), -5.0, np.float32)
  for t, tok in enumerate([4, 5, 3, 0]):
    logits[0, t, tok] = 5.0  # predictions: 4, 5, 3, 0 (pad)
  targets = jnp.array([[4, 2, 3, PAD_ID]])  # right, wrong, right, padding
  correct, total = token_accuracy(jnp.asarray(logits), targets)
  assert (correct, total) == (2.0, 3.0)
