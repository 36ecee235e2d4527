"""Coverage (See et al. 2017; Tu et al. 2016): the decoder remembers how much attention each
source position has had so far, so it can stop attending to (and copying, and repeating) what it
has already said.

  c_t   = sum_{t' < t} a_{t'}                      the coverage vector [B, S], zeros at t = 0
  e_t,s = score(q_t, h_s) + v . tanh(w c_t,s + b)   the attention type's score plus a learned
                                                    function of the position's coverage
  loss  = sum_t sum_s min(a_t,s, c_t,s)             See et al.'s coverage loss, per target token

See et al. put w c inside an additive score's tanh; here the coverage term is added to any type's
score (Bahdanau, Luong, location), so Luong attention still scores all T steps in one product
and only the softmax runs step by step (`weights_over_steps`). With v = 0 at initialization the
term starts at exactly 0. Pure functions; the model calls them (`s2s_jax.model`).

Shape legend: B batch, T target steps, S source positions, C the coverage term's hidden units.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from s2s_jax import attention as attn
from s2s_jax.special_ids import PAD_ID

UNITS = 8  # C: a scalar function of one number needs few


def init(rng: jax.Array, param_dtype: Any) -> dict[str, jax.Array]:
  """w, b, v [C]: v = 0, so a new model's attention is the same with or without coverage."""
  return {"w": jax.random.normal(rng, (UNITS,), jnp.float32).astype(param_dtype),
          "b": jnp.zeros((UNITS,), param_dtype), "v": jnp.zeros((UNITS,), param_dtype)}


def score_term(p: dict[str, jax.Array], coverage: jax.Array) -> jax.Array:
  """v . tanh(w c + b) for each position: coverage [..., S] -> float32 [..., S]."""
  hidden = jnp.tanh(coverage[..., None] * p["w"].astype(jnp.float32)
                    + p["b"].astype(jnp.float32))
  return hidden @ p["v"].astype(jnp.float32)


def weights_over_steps(p: dict[str, jax.Array], scores_BTS: jax.Array, mask_BS: jax.Array
                       ) -> jax.Array:
  """The attention weights of T steps whose scores without coverage are `scores_BTS` (computed
  at once): each step adds its coverage term, and its weights to the coverage: [B, T, S]."""

  def step(coverage_BS, scores_BS):
    weights_BS = attn.masked_softmax(scores_BS + score_term(p, coverage_BS), mask_BS)
    return coverage_BS + weights_BS, weights_BS

  zeros_BS = jnp.zeros(mask_BS.shape, jnp.float32)
  _, weights_TBS = jax.lax.scan(step, zeros_BS, scores_BTS.astype(jnp.float32).swapaxes(0, 1))
  return weights_TBS.swapaxes(0, 1)


def loss(weights_BTS: jax.Array, targets_BT: jax.Array) -> jax.Array:
  """See et al.'s coverage loss per target token, sum_s min(a_t,s, c_t,s): [B, T] float32,
  exactly 0 at padded targets."""
  w = weights_BTS.astype(jnp.float32)
  coverage_BTS = jnp.cumsum(w, axis=1) - w  # what the steps before t gave each position
  per_token_BT = jnp.sum(jnp.minimum(w, coverage_BTS), axis=-1)
  return jnp.where(targets_BT != PAD_ID, per_token_BT, 0.0)
