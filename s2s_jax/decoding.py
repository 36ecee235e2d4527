"""Search over a step-function protocol; this module knows nothing about the model.

A step function maps `(carry, token_B) -> (logits_BV, new carry)`; the carry is any pytree (for
`Seq2Seq`, the `DecoderCarry`, with the `Encoded` source bound by a closure). Shape legend: B batch,
V vocabulary, T output length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]


def greedy(step_fn: StepFn, carry: Any, batch_size: int, max_length: int) -> jax.Array:
  """Greedy decoding: int32 tokens [B, max_length], each row EOS-terminated then PAD-filled.

  A row that has not produced EOS after `max_length` steps is cut there (no EOS). The loop stops
  as soon as every row has finished.
  """

  def cond(state):
    t, _, _, done, _ = state
    return (t < max_length) & ~jnp.all(done)

  def body(state):
    t, carry, token_B, done_B, out_BT = state
    logits_BV, carry = step_fn(carry, token_B)
    next_B = jnp.where(done_B, PAD_ID, jnp.argmax(logits_BV, axis=-1).astype(jnp.int32))
    out_BT = jax.lax.dynamic_update_slice_in_dim(out_BT, next_B[:, None], t, axis=1)
    return t + 1, carry, next_B, done_B | (next_B == EOS_ID), out_BT

  state = (jnp.int32(0), carry, jnp.full((batch_size,), BOS_ID, jnp.int32),
           jnp.zeros((batch_size,), bool), jnp.full((batch_size, max_length), PAD_ID, jnp.int32))
  return jax.lax.while_loop(cond, body, state)[-1]
