"""Masked token cross-entropy (with label smoothing) and token accuracy.

Shape legend: B batch, T target length, V vocabulary. Targets equal to PAD_ID are padding: they
contribute nothing to any sum or count.

Label smoothing with rate eps trains against the distribution q that puts 1 - eps on the gold
token and eps / (V - 1) on each other token; the loss is the cross-entropy H(q, p), so with eps > 0
its minimum is the entropy of q rather than 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from s2s_jax.special_ids import PAD_ID


def token_cross_entropy(
    logits_BTV: jax.Array, targets_BT: jax.Array, *, label_smoothing: float = 0.0
) -> jax.Array:
  """Per-token loss [B, T] (float32), exactly 0 at padded positions."""
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"label_smoothing={label_smoothing!r} is invalid; allowed: a float in [0, 1)")
  logprobs_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
  gold_BT = jnp.take_along_axis(logprobs_BTV, targets_BT[..., None], axis=-1)[..., 0]
  loss_BT = -gold_BT
  if label_smoothing > 0.0:
    V = logits_BTV.shape[-1]
    others_BT = jnp.sum(logprobs_BTV, axis=-1) - gold_BT
    loss_BT = -(1.0 - label_smoothing) * gold_BT - label_smoothing / (V - 1) * others_BT
  return jnp.where(targets_BT != PAD_ID, loss_BT, 0.0)


def cross_entropy(
    logits_BTV: jax.Array, targets_BT: jax.Array, *, label_smoothing: float = 0.0
) -> tuple[jax.Array, jax.Array]:
  """`(loss_sum, num_tokens)` over non-padding targets; the per-token mean is their ratio.

  Returning the sum and the count (rather than a mean) lets data-parallel and accumulated steps
  average over the true number of tokens.
  """
  loss_BT = token_cross_entropy(logits_BTV, targets_BT, label_smoothing=label_smoothing)
  return jnp.sum(loss_BT), jnp.sum(targets_BT != PAD_ID).astype(jnp.float32)


def mean_cross_entropy(
    logits_BTV: jax.Array, targets_BT: jax.Array, *, label_smoothing: float = 0.0
) -> jax.Array:
  """Per-token mean cross-entropy over non-padding targets (0 if there are none)."""
  total, count = cross_entropy(logits_BTV, targets_BT, label_smoothing=label_smoothing)
  return total / jnp.maximum(count, 1.0)


def token_accuracy(logits_BTV: jax.Array, targets_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(num_correct, num_tokens)`: argmax predictions equal to non-padding targets."""
  real_BT = targets_BT != PAD_ID
  correct_BT = (jnp.argmax(logits_BTV, axis=-1) == targets_BT) & real_BT
  return jnp.sum(correct_BT).astype(jnp.float32), jnp.sum(real_BT).astype(jnp.float32)
