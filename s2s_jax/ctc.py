"""Connectionist temporal classification (Graves et al. 2006) on the encoder, for joint
CTC-attention models (Kim, Hori & Watanabe 2017; Watanabe et al. 2017): the loss (optax's), the
best-path decode, and the prefix scorer that joint beam search adds to the attention scores.
Knows no model: everything here reads CTC logits or log-probabilities over frames.

The CTC alphabet is the target vocabulary with PAD_ID as the blank (PAD is never a target, so no
extra output is needed); BOS and EOS are never emitted (their logits are masked out), and EOS in
a target ends it. Frames past an input's length are treated as certain blanks (log-probability
0 for the blank, -inf for the rest), which leaves every prefix score exactly as the unpadded
frames give it: padding cannot change a result.

Prefix scores (Watanabe et al. 2017, Algorithm 2; ESPnet's `CTCPrefixScore`): for a prefix g,
r^n_t(g) and r^b_t(g) are the log-probabilities that frames 0..t collapse to g with frame t
non-blank / blank. Extending g by c:
  phi_t(c)   = r^b_t(g)                           if c == last(g)
             = logaddexp(r^b_t(g), r^n_t(g))      otherwise
  r^n_t(gc)  = logaddexp(r^n_{t-1}(gc), phi_{t-1}(c)) + x_t(c)
  r^b_t(gc)  = logaddexp(r^n_{t-1}(gc), r^b_{t-1}(gc)) + x_t(blank)
  psi(gc)    = logsumexp_t (phi_{t-1}(c) + x_t(c))  log P(the output starts with gc)
  psi(g EOS) = logaddexp(r^n_{F-1}(g), r^b_{F-1}(g)) log P(the output is g)
with a frame -1 before the first where the empty prefix has r^b = 0 (so phi_{-1} = 0 for it).

Shape legend: B inputs, F CTC frames, V vocabulary (blank included), L label length, N rows
searched (B * K), K beam size, T output length.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from s2s_jax import decoding
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID

BLANK_ID = PAD_ID
_NEVER_EMITTED = (BOS_ID, EOS_ID)


def _mask_specials(logits_BFV: jax.Array, fill: float = -jnp.inf) -> jax.Array:
  """float32 logits with BOS and EOS set to `fill` (finite for optax, whose one-hot products
  would turn -inf into NaN)."""
  never_V = jnp.isin(jnp.arange(logits_BFV.shape[-1]), jnp.array(_NEVER_EMITTED))
  return jnp.where(never_V, fill, logits_BFV.astype(jnp.float32))


def log_probs(logits_BFV: jax.Array, mask_BF: jax.Array) -> jax.Array:
  """Per-frame log-probabilities [B, F, V] over blank + labels (BOS, EOS: -inf); frames past an
  input's end (mask False) are certain blanks."""
  logp_BFV = jax.nn.log_softmax(_mask_specials(logits_BFV), axis=-1)
  blank_V = jnp.where(jnp.arange(logits_BFV.shape[-1]) == BLANK_ID, 0.0, -jnp.inf)
  return jnp.where(mask_BF[..., None], logp_BFV, blank_V)


def labels(targets_BT: jax.Array) -> jax.Array:
  """CTC labels from decoder targets (tokens, EOS, PAD): EOS becomes padding [B, T]."""
  return jnp.where(targets_BT == EOS_ID, PAD_ID, targets_BT)


def feasible(labels_BL: jax.Array, frames_B: jax.Array) -> jax.Array:
  """Whether each label sequence fits its frames [B] bool: CTC needs length + repeats <= frames
  (a blank must separate two equal labels)."""
  real_BL = labels_BL != PAD_ID
  repeats_B = jnp.sum(real_BL[:, 1:] & (labels_BL[:, 1:] == labels_BL[:, :-1]), axis=1)
  return jnp.sum(real_BL, axis=1) + repeats_B <= frames_B


class Loss(NamedTuple):
  """Sums over a batch (psum-able): the loss of the feasible examples and how many were not."""

  nll_sum: jax.Array  # float32: summed -log P(labels | input) of the feasible examples
  skipped: jax.Array  # float32: examples whose labels cannot be emitted in their frames


def loss(logits_BFV: jax.Array, mask_BF: jax.Array, targets_BT: jax.Array) -> Loss:
  """The CTC loss of decoder targets (`optax.ctc_loss`, blank = PAD_ID).

  Examples whose labels do not fit their frames (`feasible`) get no term: their labels are
  blanked out and their loss multiplied by zero, so no gradient flows from them.
  """
  labels_BT = labels(targets_BT)
  ok_B = feasible(labels_BT, jnp.sum(mask_BF, axis=1))
  label_paddings_BT = jnp.where(ok_B[:, None], labels_BT == PAD_ID, True).astype(jnp.float32)
  nll_B = optax.ctc_loss(_mask_specials(logits_BFV, -1e9), 1.0 - mask_BF.astype(jnp.float32),
                         labels_BT, label_paddings_BT, blank_id=BLANK_ID)
  return Loss(jnp.sum(jnp.where(ok_B, nll_B, 0.0)), jnp.sum(~ok_B).astype(jnp.float32))


def greedy(logp_BFV: jax.Array, max_length: int, limit_B: jax.Array | None = None
           ) -> decoding.Hypotheses:
  """Best-path decoding: each frame's most probable symbol, repeats merged, blanks dropped
  (R = 1). `logprob` and `score` are the best path's log-probability; outputs end in EOS unless
  cut at the limit (`max_length`, or `limit_B` tokens EOS included)."""
  B, F, _ = logp_BFV.shape
  best_BF = jnp.argmax(logp_BFV, axis=-1).astype(jnp.int32)
  path_logprob_B = jnp.sum(jnp.max(logp_BFV, axis=-1), axis=1)
  previous_BF = jnp.pad(best_BF[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK_ID)
  emit_BF = (best_BF != BLANK_ID) & (best_BF != previous_BF)
  count_B = jnp.sum(emit_BF, axis=1)
  # Scatter the emitted symbols to the front; the rest go to a dropped column F.
  position_BF = jnp.where(emit_BF, jnp.cumsum(emit_BF, axis=1) - 1, F)
  tokens_BF = jnp.full((B, F + 1), PAD_ID, jnp.int32).at[
      jnp.arange(B)[:, None], position_BF].set(best_BF, mode="drop")[:, :F]
  tokens_BT = jnp.full((B, max(F, max_length) + 1), PAD_ID, jnp.int32)
  tokens_BT = tokens_BT.at[:, :F].set(tokens_BF).at[jnp.arange(B), count_B].set(EOS_ID)
  limit_B = jnp.full((B,), max_length, jnp.int32) if limit_B is None else limit_B
  length_B = jnp.minimum(count_B + 1, limit_B)
  tokens_BT = jnp.where(jnp.arange(tokens_BT.shape[1])[None] < length_B[:, None],
                        tokens_BT, PAD_ID)[:, :max_length]
  logprob_B1 = path_logprob_B[:, None]
  return decoding.Hypotheses(tokens_BT[:, None], logprob_B1, logprob_B1, length_B[:, None])


# ----------------------------------------------------------------------------- prefix scores


class _PrefixState(NamedTuple):
  r_FN2: jax.Array  # (r^n, r^b) of each row's prefix at frames -1 .. F-1: [F + 1, N, 2]
  psi_N: jax.Array  # log P(the output starts with the row's prefix)


def _extend(x_FNV: jax.Array, state: _PrefixState, last_N: jax.Array
            ) -> tuple[jax.Array, jax.Array]:
  """psi of every one-token extension of every row [N, V], and their (r^n, r^b) [F, N, V, 2]."""
  N, V = x_FNV.shape[1:]
  rn_FN, rb_FN = state.r_FN2[..., 0], state.r_FN2[..., 1]
  same_NV = jnp.arange(V)[None, :] == last_N[:, None]
  # phi_{t-1} for t = 0 .. F-1 (frames -1 .. F-2 of the prefix).
  phi_FNV = jnp.where(same_NV, rb_FN[:-1, :, None], jnp.logaddexp(rn_FN, rb_FN)[:-1, :, None])

  def frame(carry, inputs):
    rn_NV, rb_NV, psi_NV = carry
    phi_NV, x_NV = inputs
    new_rn_NV = jnp.logaddexp(rn_NV, phi_NV) + x_NV
    new_rb_NV = jnp.logaddexp(rn_NV, rb_NV) + x_NV[:, BLANK_ID:BLANK_ID + 1]
    psi_NV = jnp.logaddexp(psi_NV, phi_NV + x_NV)
    return (new_rn_NV, new_rb_NV, psi_NV), jnp.stack([new_rn_NV, new_rb_NV], axis=-1)

  never = jnp.full((N, V), -jnp.inf)
  (_, _, psi_NV), r_FNV2 = jax.lax.scan(frame, (never, never, never), (phi_FNV, x_FNV))
  full_N = jnp.logaddexp(rn_FN[-1], rb_FN[-1])  # the prefix as the whole output
  psi_NV = jnp.where(jnp.arange(V) == EOS_ID, full_N[:, None], psi_NV)
  psi_NV = jnp.where(jnp.isin(jnp.arange(V), jnp.array([BLANK_ID, BOS_ID])), -jnp.inf, psi_NV)
  return psi_NV, r_FNV2


def prefix_scorer(logp_BFV: jax.Array, beam_size: int, weight: float) -> decoding.PrefixScorer:
  """The CTC prefix scorer of joint beam search over `logp_BFV` (`log_probs`), for B * K rows
  (row b * K + k searches input b); its increments are log P(prefix + c) - log P(prefix)."""
  B, F, V = logp_BFV.shape
  x_FNV = jnp.repeat(logp_BFV, beam_size, axis=0).swapaxes(0, 1)
  N = B * beam_size
  # The empty prefix: all blanks so far; frame -1 holds r^b = 0.
  rb_FN = jnp.concatenate([jnp.zeros((1, N)), jnp.cumsum(x_FNV[:, :, BLANK_ID], axis=0)])
  start = _PrefixState(jnp.stack([jnp.full((F + 1, N), -jnp.inf), rb_FN], axis=-1),
                       jnp.zeros((N,), jnp.float32))

  def score(state: _PrefixState, last_N: jax.Array) -> tuple[jax.Array, Any]:
    psi_NV, r_FNV2 = _extend(x_FNV, state, last_N)
    # A dead row (psi -inf) has no extensions: -inf, not -inf - -inf.
    increment_NV = jnp.where(jnp.isneginf(state.psi_N)[:, None], -jnp.inf,
                             psi_NV - state.psi_N[:, None])
    return increment_NV, (psi_NV, r_FNV2)

  def select(expanded: Any, rows_N: jax.Array, tokens_N: jax.Array) -> _PrefixState:
    psi_NV, r_FNV2 = expanded
    r_FN2 = r_FNV2[:, rows_N, tokens_N]
    before_1N2 = jnp.full((1, r_FN2.shape[1], 2), -jnp.inf)  # a non-empty prefix at frame -1
    return _PrefixState(jnp.concatenate([before_1N2, r_FN2]), psi_NV[rows_N, tokens_N])

  return decoding.PrefixScorer(start, score, select, weight)
