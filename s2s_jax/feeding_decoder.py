"""The teacher-forced LSTM decoder loop with Luong attention and input feeding, with a hand-written
backward pass.

Shape legend: T target steps, B batch, S source length, H decoder hidden units, D memory features,
R readout size, E embedding, G = 4H LSTM gates, X_l input features of decoder layer l (the fed
readout R for layer 0, H above it).

With input feeding (Luong et al. 2015) every step reads the previous step's attentional vector,
so the decoder cannot run layer by layer like an encoder. Per step t, with the embedding half of
layer 0's input projection hoisted out of the loop (`xe_t = emb_t W_e + b`):

  z^0_t   = xe_t + [r_{t-1}; h^0_{t-1}] [W_f; W_h^0]          one matmul
  z^l_t   = [drop(out^{l-1}_t); h^l_{t-1}] [W_i^l; W_h^l] + b^l   upper layers, one matmul each
  out^l_t = h^l_t (+ out^{l-1}_t with residual connections); q_t = out^{L-1}_t
  a_t     = masked_softmax(keys q_t)      ctx_t = a_t memory
  r_t     = tanh([q_t; ctx_t] W_r + b_r)

This is `model._decoder_step` for these configs, unrolled over T. Autodiff of that scan would
accumulate every weight gradient inside the reverse loop (T small products and T read-modify-
writes per weight). The backward pass here is a reverse scan that computes only the gradients
that flow through time (gates, attention scores, readout); every weight, key and memory gradient
is one large product over all T*B rows after the loop.

Dropout between decoder layers uses masks drawn outside the loop (`keep`), so the loop itself
holds no random number generation.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax import attention as attn
from s2s_jax import rnn

F32 = jnp.float32


class FeedingWeights(NamedTuple):
  """What the loop multiplies by; every matrix is `x @ W` ([in, out])."""

  W0_XG: jax.Array  # layer 0: [W_f; W_h^0], [R + H, G] (its bias is in the hoisted `xe`)
  upper: tuple[tuple[jax.Array, jax.Array], ...]  # layers 1..L-1: ([W_i; W_h] [H + H, G], b [G])
  W_r: jax.Array  # readout [H + D, R]
  b_r: jax.Array  # [R]


def _one_query(spec: str, x_BY: jax.Array, y_BSZ: jax.Array) -> jax.Array:
  """A per-row product of one vector with a [S, Z] matrix, e.g. 'bty,bsy->bts' for
  [B, Y] x [B, S, Y] -> [B, S], in float32. Written with a unit T axis: XLA:CPU runs that
  batched-matmul form several times faster than the 2-D forms or a multiply-reduce."""
  return jnp.einsum(spec, x_BY[:, None], y_BSZ, preferred_element_type=F32)[:, 0]


def _loop_forward(w: FeedingWeights, xe_TBG, keys_BSH, memory_BSD, mask_BS, states0, feed0_BR,
                  keep, rate, residual, dtype, unroll):
  """The forward loop: outputs, plus what the backward needs (activated gates, cell and hidden
  states per layer, attention weights, contexts)."""
  def body(carry, inputs):
    states, feed_BR = carry
    xe_BG, keep_t = inputs
    c_BH, h_BH = states[0]
    z_BG = xe_BG + rnn.matmul(jnp.concatenate([feed_BR.astype(dtype), h_BH.astype(dtype)], -1),
                              w.W0_XG, dtype)
    act_BG, c_BH, h_BH = rnn.lstm_pointwise(z_BG, c_BH)
    new_states, acts, cs, hs = [(c_BH, h_BH)], [act_BG], [c_BH], [h_BH.astype(dtype)]
    out_BH = hs[0]
    for l, (W_XG, b_G) in enumerate(w.upper, start=1):
      x_BH = out_BH if keep is None else rnn.apply_dropout_mask(out_BH, keep_t[l - 1], rate)
      c_BH, h_BH = states[l]
      z_BG = rnn.matmul(jnp.concatenate([x_BH, h_BH.astype(dtype)], -1), W_XG, dtype)
      act_BG, c_BH, h_BH = rnn.lstm_pointwise(z_BG + b_G.astype(F32), c_BH)
      new_states.append((c_BH, h_BH))
      acts.append(act_BG)
      cs.append(c_BH)
      hs.append(h_BH.astype(dtype))
      out_BH = hs[-1] + out_BH if residual else hs[-1]
    a_BS = attn.masked_softmax(_one_query("bth,bsh->bts", out_BH, keys_BSH), mask_BS)
    ctx_BD = _one_query("bts,bsd->btd", a_BS, memory_BSD.astype(F32))
    u_BR = rnn.matmul(jnp.concatenate([out_BH, ctx_BD.astype(dtype)], -1), w.W_r, dtype)
    r32_BR = jnp.tanh(u_BR + w.b_r.astype(F32))
    r_BR = r32_BR.astype(dtype)
    saved = (acts, cs, hs, a_BS, ctx_BD, None if dtype == F32 else r32_BR)
    return (tuple(new_states), r_BR), (r_BR, saved)

  keep_T = None if keep is None else tuple(keep)
  _, (r_TBR, saved) = jax.lax.scan(body, (tuple(states0), feed0_BR), (xe_TBG, keep_T),
                                  unroll=unroll)
  return r_TBR, saved


def _outputs_of_layers(hs_TBH, keep, rate, residual):
  """Each upper layer's (dropped-out) input and the top output q, recomputed from the hidden
  states with the loop's own operations (so bitwise what the loop used)."""
  out = hs_TBH[0]
  inputs = []
  for l in range(1, len(hs_TBH)):
    inputs.append(out if keep is None else rnn.apply_dropout_mask(out, keep[l - 1], rate))
    out = hs_TBH[l] + out if residual else hs_TBH[l]
  return inputs, out


def _shift(first_BX, seq_TBX):
  """The previous step's value at every step: [first, seq[0], ..., seq[T-2]]."""
  return jnp.concatenate([first_BX[None].astype(seq_TBX.dtype), seq_TBX[:-1]], axis=0)


def _weight_grad(x_TBX, dz_TBG, dtype):
  """sum_t x_t^T dz_t as one [X, T*B] x [T*B, G] product."""
  return jnp.einsum("tbx,tbg->xg", x_TBX.astype(dtype), dz_TBG.astype(dtype),
                    preferred_element_type=F32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(8, 9, 10, 11))
def feeding_decoder(w: FeedingWeights, xe_TBG: jax.Array, keys_BSH: jax.Array,
                    memory_BSD: jax.Array, mask_BS: jax.Array, states0: tuple, feed0_BR: jax.Array,
                    keep: tuple | None, rate: float, residual: bool, dtype: Any, unroll: int = 1
                    ) -> tuple[jax.Array, jax.Array]:
  """Runs the decoder over all T steps: `(r_TBR in dtype, attention weights a_TBS float32)`.

  Args:
    w: the loop's weights (`FeedingWeights`).
    xe_TBG: layer 0's hoisted input projection of the target embeddings, with its bias.
    keys_BSH, memory_BSD, mask_BS: the attention keys, memory and source mask (`Encoded`).
    states0: one `(c_BH, h_BH)` float32 carry per layer; feed0_BR: the initial fed readout.
    keep: None, or one bool dropout mask [T, B, H] per upper layer (the input of layer l >= 1).
    rate: the dropout rate the masks were drawn with; residual: residual connections from layer
      1 on; dtype: compute dtype of the matmuls; unroll: `lax.scan` unroll factor of both loops.
  """
  r_TBR, (_, _, _, a_TBS, _, _) = _loop_forward(w, xe_TBG, keys_BSH, memory_BSD, mask_BS,
                                                states0, feed0_BR, keep, rate, residual, dtype,
                                                unroll)
  return r_TBR, a_TBS


def _feeding_fwd(w, xe_TBG, keys_BSH, memory_BSD, mask_BS, states0, feed0_BR, keep, rate,
                 residual, dtype, unroll):
  r_TBR, saved = _loop_forward(w, xe_TBG, keys_BSH, memory_BSD, mask_BS, states0, feed0_BR,
                               keep, rate, residual, dtype, unroll)
  residuals = (w, keys_BSH, memory_BSD, mask_BS, states0, feed0_BR, keep, r_TBR, saved)
  return (r_TBR, saved[3]), residuals


def _feeding_bwd(rate, residual, dtype, unroll, residuals, cotangents):
  w, keys_BSH, memory_BSD, mask_BS, states0, feed0_BR, keep, r_TBR, saved = residuals
  acts, cs, hs, a_TBS, ctx_TBD, r32_TBR = saved
  dr_TBR, da_TBS = cotangents
  L, H, R = len(hs), hs[0].shape[-1], feed0_BR.shape[-1]
  r32_TBR = r_TBR.astype(F32) if r32_TBR is None else r32_TBR
  c_prev = [_shift(states0[l][0], cs[l]) for l in range(L)]
  memory_f32, keys_f32 = memory_BSD.astype(F32), keys_BSH.astype(F32)
  W0_t = w.W0_XG.T
  upper_t = [W.T for W, _ in w.upper]
  W_r_t = w.W_r.T

  def body(carry, inputs):
    dstates, dfeed_BR = carry
    dr_BR, da_BS, r32_BR, a_BS, acts_t, c_prev_t, keep_t = inputs
    du_BR = (dr_BR.astype(F32) + dfeed_BR) * (1.0 - r32_BR * r32_BR)
    dqc = rnn.matmul(du_BR, W_r_t, dtype)
    dq_BH, dctx_BD = dqc[:, :H], dqc[:, H:]
    da_BS = _one_query("btd,bsd->bts", dctx_BD, memory_f32) + da_BS
    ds_BS = a_BS * (da_BS - jnp.sum(a_BS * da_BS, axis=-1, keepdims=True))
    dout_BH = dq_BH + _one_query("bts,bsh->bth", ds_BS, keys_f32)
    new_dstates, dzs = [None] * L, [None] * L
    for l in range(L - 1, 0, -1):
      dc_BH, dh_BH = dstates[l]
      dzs[l], dc_prev = rnn.lstm_pointwise_bwd(acts_t[l], c_prev_t[l], dc_BH, dout_BH + dh_BH)
      dxh = rnn.matmul(dzs[l], upper_t[l - 1], dtype)
      dx_BH, new_dh = dxh[:, :H], dxh[:, H:]
      if keep_t is not None:
        dx_BH = jnp.where(keep_t[l - 1], dx_BH, 0.0) / (1.0 - rate)
      new_dstates[l] = (dc_prev, new_dh)
      dout_BH = dx_BH + dout_BH if residual else dx_BH
    dc_BH, dh_BH = dstates[0]
    dzs[0], dc_prev = rnn.lstm_pointwise_bwd(acts_t[0], c_prev_t[0], dc_BH, dout_BH + dh_BH)
    dfh = rnn.matmul(dzs[0], W0_t, dtype)
    new_dstates[0] = (dc_prev, dfh[:, R:])
    return (tuple(new_dstates), dfh[:, :R]), (dzs, du_BR, ds_BS, dctx_BD)

  zeros = tuple((jnp.zeros_like(c), jnp.zeros_like(h)) for c, h in states0)
  keep_T = None if keep is None else tuple(keep)
  (dstates0, dfeed0), (dz_TBG, du_TBR, ds_TBS, dctx_TBD) = jax.lax.scan(
      body, (zeros, jnp.zeros(feed0_BR.shape, F32)),
      (dr_TBR, da_TBS, r32_TBR, a_TBS, acts, c_prev, keep_T), reverse=True, unroll=unroll)

  # Every weight, key and memory gradient: one product over all T*B rows each.
  inputs, q_TBH = _outputs_of_layers(hs, keep, rate, residual)
  dW0 = _weight_grad(jnp.concatenate([_shift(feed0_BR, r_TBR), _shift(states0[0][1], hs[0])],
                                     -1), dz_TBG[0], dtype)
  upper = tuple((_weight_grad(jnp.concatenate([inputs[l - 1], _shift(states0[l][1], hs[l])], -1),
                              dz_TBG[l], dtype).astype(W.dtype),
                 jnp.sum(dz_TBG[l], axis=(0, 1)).astype(b.dtype))
                for l, (W, b) in enumerate(w.upper, start=1))
  dW_r = _weight_grad(jnp.concatenate([q_TBH, ctx_TBD.astype(dtype)], -1), du_TBR, dtype)
  dw = FeedingWeights(W0_XG=dW0.astype(w.W0_XG.dtype), upper=upper,
                      W_r=dW_r.astype(w.W_r.dtype),
                      b_r=jnp.sum(du_TBR, axis=(0, 1)).astype(w.b_r.dtype))
  dkeys = jnp.einsum("tbs,tbh->bsh", ds_TBS, q_TBH.astype(F32)).astype(keys_BSH.dtype)
  dmemory = jnp.einsum("tbs,tbd->bsd", a_TBS, dctx_TBD).astype(memory_BSD.dtype)
  dstates0 = tuple((dc.astype(c.dtype), dh.astype(h.dtype))
                   for (dc, dh), (c, h) in zip(dstates0, states0, strict=True))
  return (dw, dz_TBG[0].astype(F32), dkeys, dmemory, None, dstates0,
          dfeed0.astype(feed0_BR.dtype), None)


feeding_decoder.defvjp(_feeding_fwd, _feeding_bwd)
