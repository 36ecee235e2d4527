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


def _phi(r_FN2: jax.Array, same: jax.Array) -> jax.Array:
  """phi_{t-1} for t = 0 .. F-1 (frames -1 .. F-2 of the prefix): r^b where the extension
  repeats the prefix's last token (`same`, broadcast against r's trailing axes), else r^n + r^b."""
  rn_FN, rb_FN = r_FN2[:-1, :, 0], r_FN2[:-1, :, 1]
  if same.ndim == 2:  # [N, V]: every extension of every row
    rn_FN, rb_FN = rn_FN[..., None], rb_FN[..., None]
  return jnp.where(same, rb_FN, jnp.logaddexp(rn_FN, rb_FN))


class _Frames(NamedTuple):
  """What the prefix scorer reads of the CTC log-probabilities, fixed for the whole search."""

  logp_BFV: jax.Array  # per-frame log-probabilities of each input
  prob_BFV: jax.Array  # exp(logp - top_BV): probabilities scaled per input and token
  top_BV: jax.Array  # each token's best log-probability over the frames (0 where none)
  blank_FN: jax.Array  # the blank's log-probability, one column per row


def _frames(logp_BFV: jax.Array, beam_size: int) -> _Frames:
  top_BV = jnp.max(logp_BFV, axis=1)
  top_BV = jnp.where(jnp.isfinite(top_BV), top_BV, 0.0)
  return _Frames(logp_BFV, jnp.exp(logp_BFV - top_BV[:, None]), top_BV,
                 jnp.repeat(logp_BFV[:, :, BLANK_ID], beam_size, axis=0).T)


def _extension_scores(frames: _Frames, state: _PrefixState, last_N: jax.Array) -> jax.Array:
  """psi of every one-token extension of every row [N, V].

  psi(gc) = logsumexp_t (phi_{t-1}(c) + x_t(c)) needs no recursion over frames, and for every c
  but the prefix's last token phi_{t-1}(c) is the same, s_{t-1} = r^n + r^b: so the sum over
  frames for all tokens at once is one matrix product of probabilities per input,
  [K, F] x [F, V], scaled by each row's best s and each token's best x. Scaling loses only
  terms below e^-87 of that product of maxima (float32's range), that is extensions whose
  probability is at least e^-84 below the row's best one; those score -inf. The last token's
  psi (phi = r^b) is summed in the log domain.
  """
  B, F, V = frames.logp_BFV.shape
  N = last_N.shape[0]
  s_FN = _phi(state.r_FN2, jnp.zeros((N,), bool))
  best_N = jnp.max(s_FN, axis=0)
  best_N = jnp.where(jnp.isfinite(best_N), best_N, 0.0)
  scaled_BKF = jnp.exp(s_FN - best_N).T.reshape(B, N // B, F)
  sum_BKV = jnp.einsum("bkf,bfv->bkv", scaled_BKF, frames.prob_BFV,
                       precision=jax.lax.Precision.HIGHEST)
  psi_NV = (jnp.log(sum_BKV) + frames.top_BV[:, None, :]).reshape(N, V) + best_N[:, None]
  # The prefix's last token (phi = r^b), and EOS: the prefix as the whole output.
  x_last_FN = _tokens(frames, jnp.arange(N), last_N)
  psi_last_N = jax.nn.logsumexp(state.r_FN2[:-1, :, 1] + x_last_FN, axis=0)
  full_N = jnp.logaddexp(state.r_FN2[-1, :, 0], state.r_FN2[-1, :, 1])
  tokens_V = jnp.arange(V)
  psi_NV = jnp.where(tokens_V == last_N[:, None], psi_last_N[:, None], psi_NV)
  psi_NV = jnp.where(tokens_V == EOS_ID, full_N[:, None], psi_NV)
  return jnp.where(jnp.isin(tokens_V, jnp.array([BLANK_ID, BOS_ID])), -jnp.inf, psi_NV)


def _tokens(frames: _Frames, rows_N: jax.Array, tokens_N: jax.Array) -> jax.Array:
  """Each frame's log-probability of token `tokens_N[n]` for row `rows_N[n]`'s input [F, N]."""
  K = rows_N.shape[0] // frames.logp_BFV.shape[0]
  return frames.logp_BFV[rows_N // K, :, tokens_N].T


def _advance(x_FN: jax.Array, blank_FN: jax.Array, phi_FN: jax.Array) -> jax.Array:
  """(r^n, r^b) of the extended prefixes at frames -1 .. F-1 [F + 1, N, 2], from each frame's
  log-probability of the new token (`x_FN`) and of the blank, and phi of the prefixes."""

  def frame(carry, inputs):
    rn_N, rb_N = carry
    phi_N, x_N, blank_N = inputs
    new_rn_N = jnp.logaddexp(rn_N, phi_N) + x_N
    new_rb_N = jnp.logaddexp(rn_N, rb_N) + blank_N
    return (new_rn_N, new_rb_N), jnp.stack([new_rn_N, new_rb_N], axis=-1)

  never_N = jnp.full(x_FN.shape[1:], -jnp.inf)
  _, r_FN2 = jax.lax.scan(frame, (never_N, never_N), (phi_FN, x_FN, blank_FN))
  before_1N2 = jnp.full((1,) + r_FN2.shape[1:], -jnp.inf)  # a non-empty prefix at frame -1
  return jnp.concatenate([before_1N2, r_FN2])


def prefix_scorer(logp_BFV: jax.Array, beam_size: int, weight: float) -> decoding.PrefixScorer:
  """The CTC prefix scorer of joint beam search over `logp_BFV` (`log_probs`), for B * K rows
  (row b * K + k searches input b); its increments are log P(prefix + c) - log P(prefix)."""
  frames = _frames(logp_BFV, beam_size)
  F, N = frames.blank_FN.shape
  # The empty prefix: all blanks so far; frame -1 holds r^b = 0.
  rb_FN = jnp.concatenate([jnp.zeros((1, N)), jnp.cumsum(frames.blank_FN, axis=0)])
  start = _PrefixState(jnp.stack([jnp.full((F + 1, N), -jnp.inf), rb_FN], axis=-1),
                       jnp.zeros((N,), jnp.float32))

  def score(state: _PrefixState, last_N: jax.Array) -> tuple[jax.Array, Any]:
    psi_NV = _extension_scores(frames, state, last_N)
    # A dead row (psi -inf) has no extensions: -inf, not -inf - -inf.
    increment_NV = jnp.where(jnp.isneginf(state.psi_N)[:, None], -jnp.inf,
                             psi_NV - state.psi_N[:, None])
    return increment_NV, (psi_NV, state.r_FN2, last_N)

  def select(expanded: Any, rows_N: jax.Array, tokens_N: jax.Array) -> _PrefixState:
    psi_NV, r_FN2, last_N = expanded
    phi_FN = _phi(r_FN2[:, rows_N], tokens_N == last_N[rows_N])
    x_FN = _tokens(frames, rows_N, tokens_N)
    return _PrefixState(_advance(x_FN, frames.blank_FN, phi_FN), psi_NV[rows_N, tokens_N])

  return decoding.PrefixScorer(start, score, select, weight)
