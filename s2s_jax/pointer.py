"""Copy attention (the pointer-generator of See et al. 2017; OpenNMT-py's `copy_attn`): the
next-token distribution mixes the vocabulary softmax with the attention over the source's
tokens,

  p(w) = g p_vocab(w) + (1 - g) sum_{s: x_s = w} a_s,      g = sigmoid(W_g r + b_g),

where r is the decoder's readout, a its attention weights and x the source ids, which share the
target's id space (a shared vocabulary). Copying can thus raise any source token, including
rare ones the softmax never learns to produce. The model hands the result on as log-probabilities
in place of logits: a log-softmax leaves them unchanged, so the loss and every search read them as
they read logits. Pure functions; the model calls them (`s2s_jax.model`).

Shape legend: B batch, T target steps (absent in a single step), S source length, V vocabulary,
X output ids (V plus the extended vocabulary's), R readout size.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

# The mixture is a probability; its log needs a floor where both parts are 0 (a token neither
# the softmax, which is never exactly 0 in float32 for reasonable logits, nor the source gives).
_TINY = 1e-30


def init(rng: jax.Array, readout_size: int, param_dtype: Any) -> dict[str, jax.Array]:
  """The gate's parameters: W [R, 1] (small, so training starts near g = 0.5) and b [1]."""
  W = jax.random.normal(rng, (readout_size, 1), jnp.float32) * readout_size ** -0.5
  return {"W": W.astype(param_dtype), "b": jnp.zeros((1,), param_dtype)}


def gate(p: dict[str, jax.Array], r: jax.Array) -> jax.Array:
  """g = sigmoid(W_g r + b_g): [..., R] -> float32 [..., 1], the weight of the vocabulary."""
  return jax.nn.sigmoid(r.astype(jnp.float32) @ p["W"].astype(jnp.float32)
                        + p["b"].astype(jnp.float32))


def copy_distribution(weights: jax.Array, source_ids_BS: jax.Array, vocab_size: int
                      ) -> jax.Array:
  """The attention mass per token id: [B, (T,) S] weights -> [B, (T,) V] (padding positions
  hold weight 0, so they add nothing)."""

  def one(w_XS, ids_S):  # X: T or nothing
    return jnp.zeros(w_XS.shape[:-1] + (vocab_size,), jnp.float32).at[..., ids_S].add(
        w_XS.astype(jnp.float32))

  return jax.vmap(one)(weights, source_ids_BS)


def mix(logits: jax.Array, weights: jax.Array, source_ids_BS: jax.Array, g: jax.Array,
        size: int | None = None) -> jax.Array:
  """log p of the pointer-generator mixture: logits [B, (T,) V], attention weights
  [B, (T,) S], source ids [B, S], gate [B, (T,) 1] -> float32 log-probabilities [B, (T,) X].
  X = `size` >= V (default V): ids V..X-1 are the extended vocabulary's (source tokens outside
  the vocabulary, `s2s_jax.data.extended_vocab`), which only copying gives mass."""
  size = logits.shape[-1] if size is None else size
  p_vocab = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  if size > logits.shape[-1]:
    p_vocab = jnp.pad(p_vocab, [(0, 0)] * (p_vocab.ndim - 1) + [(0, size - logits.shape[-1])])
  copied = copy_distribution(weights, source_ids_BS, size)
  return jnp.log(jnp.maximum(g * p_vocab + (1.0 - g) * copied, _TINY))
