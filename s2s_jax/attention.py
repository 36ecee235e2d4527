"""Attention as pure functions: scores, masked softmax, context.

Shape legend: B batch, T decoder steps, S source positions, H decoder hidden, D encoder output
features (memory), A attention (key) size.

Keys are computed once per source sentence (in `Seq2Seq.encode`), so a decoding step only
projects its query:
  Bahdanau (additive):  score(s, h_j) = v . tanh(W_q s + b_q + W_k h_j)   keys = h W_k   [B, S, A]
  Luong dot:            score(s, h_j) = s . h_j                          keys = h       [B, S, D]
  Luong general:        score(s, h_j) = s . (W_a h_j)                    keys = h W_a   [B, S, H]
  Location-aware:       score(s, h_j) = v . tanh(W_q s + b_q + W_k h_j + U f_j),
                        f = F * alpha_prev                               (Chorowski et al. 2015)
The location-aware score is Bahdanau's plus features of where the previous step attended: K
1-D convolutions of width R (odd, centred, zero-padded) over the previous weights, so the
model can move along long acoustic inputs instead of searching them by content alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def bahdanau_scores(query_BA: jax.Array, keys_BSA: jax.Array, v_A: jax.Array) -> jax.Array:
  """Additive scores for one decoder step: query (already projected) [B, A] -> [B, S]."""
  return jnp.einsum("bsa,a->bs", jnp.tanh(keys_BSA + query_BA[:, None, :]), v_A)


def luong_scores(query_BTH: jax.Array, keys_BSH: jax.Array) -> jax.Array:
  """Multiplicative scores for T decoder steps at once: [B, T, H] x [B, S, H] -> [B, T, S]."""
  return jnp.einsum("bth,bsh->bts", query_BTH, keys_BSH, preferred_element_type=jnp.float32)


def masked_softmax(scores_BxS: jax.Array, mask_BxS: jax.Array) -> jax.Array:
  """Softmax over the last (source) axis where padded positions get exactly zero weight.

  `mask_BxS` (True = real token) broadcasts against the scores. A row with no real position gets
  all-zero weights rather than NaN.
  """
  scores = jnp.where(mask_BxS, scores_BxS.astype(jnp.float32), -jnp.inf)
  max_score = jnp.max(scores, axis=-1, keepdims=True)
  max_score = jnp.where(jnp.isfinite(max_score), max_score, 0.0)
  unnorm = jnp.where(mask_BxS, jnp.exp(scores - max_score), 0.0)
  total = jnp.sum(unnorm, axis=-1, keepdims=True)
  return unnorm / jnp.where(total > 0, total, 1.0)


def attend(weights_BxS: jax.Array, memory_BSD: jax.Array) -> jax.Array:
  """Context vectors: the attention-weighted sum of the memory, [B, (T,) S] -> [B, (T,) D]."""
  if weights_BxS.ndim == 2:
    return jnp.einsum("bs,bsd->bd", weights_BxS, memory_BSD.astype(jnp.float32))
  return jnp.einsum("bts,bsd->btd", weights_BxS, memory_BSD.astype(jnp.float32))


def location_features(prev_weights_BS: jax.Array, filters_RK: jax.Array) -> jax.Array:
  """f = F * alpha_prev: [B, S] previous attention weights -> [B, S, K] features; position j
  sees the weights at j - R // 2 ... j + R // 2 (zeros beyond the sequence)."""
  R = filters_RK.shape[0]
  S = prev_weights_BS.shape[1]
  padded_BX = jnp.pad(prev_weights_BS.astype(jnp.float32), ((0, 0), (R // 2, R // 2)))
  windows_BSR = padded_BX[:, jnp.arange(S)[:, None] + jnp.arange(R)[None, :]]
  return windows_BSR @ filters_RK.astype(jnp.float32)


def location_scores(query_BA: jax.Array, keys_BSA: jax.Array, location_BSK: jax.Array,
                    U_KA: jax.Array, v_A: jax.Array) -> jax.Array:
  """Location-aware scores for one decoder step: Bahdanau's with the location features
  (`location_features`) projected into the attention space by U: [B, S]."""
  hidden_BSA = keys_BSA + query_BA[:, None, :] + location_BSK @ U_KA.astype(jnp.float32)
  return jnp.einsum("bsa,a->bs", jnp.tanh(hidden_BSA), v_A)
