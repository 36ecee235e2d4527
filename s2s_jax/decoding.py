"""Search over a step-function protocol: greedy, beam search and sampling. Imports no model code.

The protocol: a step function maps `(carry, tokens_N) -> (logits_NV, new carry)` for N rows,
where the carry is any pytree whose leaves all have N rows on their leading axis (for `Seq2Seq`:
the `DecoderCarry`, with the `Encoded` source bound by a closure). Logits may be unnormalized;
the search takes their log-softmax. Greedy and sampling run N = B rows; beam search runs
N = B*K rows, beam-major within each sentence (row b*K + k), with the carry and everything the
step function closes over tiled by `tile_beams`; it reorders the carry with `gather_rows`
(every leaf's leading axis indexed).

Every loop is one `lax.while_loop` that stops as soon as every sentence is finished, so a whole
search compiles into one program. Outputs are `Hypotheses`: tokens EOS-terminated and PAD-filled
after; a hypothesis that reaches its length limit is cut there without EOS.

Length limits: `max_length` (static) sizes the output; `limit_B` (optional, <= max_length) caps
each sentence, e.g. from a ratio of its source length.

Scores: `logprob` is the sum of the model's log-probabilities of the output tokens, EOS included
(what teacher forcing gives); beam search ranks by `score = logprob / penalty(length)` with
`length` counting EOS:
  'gnmt'     penalty = ((5 + length) / 6) ** alpha   (Wu et al. 2016)
  'average'  penalty = length ** alpha               (alpha = 1: the mean log-probability)
alpha = 0 ranks by the plain sum. Greedy and sampling report score = logprob. Beam search can
add a second score of each prefix (`PrefixScorer`: the CTC prefix scores of joint
CTC-attention decoding, `s2s_jax.ctc`); it then ranks by the weighted sum of both.

Shape legend: B sentences, K beam size, N rows the step function sees, V vocabulary,
T max_length, M = 2K candidates per sentence and step, R n-best rank.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]
LENGTH_PENALTIES = ("gnmt", "average")


class Hypotheses(NamedTuple):
  """Search results for B sentences, R hypotheses each, best first."""

  tokens_BRT: jax.Array  # int32; EOS-terminated then PAD, or cut at the limit without EOS
  logprob_BR: jax.Array  # float32 sum of the tokens' log-probabilities (EOS included)
  score_BR: jax.Array  # float32 ranking score (length-normalized for beam search)
  length_BR: jax.Array  # int32 tokens in the output (EOS included)


def gather_rows(tree: Any, index_N: jax.Array) -> Any:
  """Every leaf's rows `index_N` (how beam search reorders the carry)."""
  return jax.tree.map(lambda x: jnp.take(x, index_N, axis=0), tree)


def tile_beams(tree: Any, beam_size: int) -> Any:
  """Repeats every leaf's rows `beam_size` times in place: row b becomes rows b*K .. b*K+K-1."""
  return jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0), tree)


def length_penalty(length: jax.Array, alpha: float, kind: str = "gnmt") -> jax.Array:
  """The divisor of a hypothesis' log-probability (see the module docstring)."""
  length = jnp.asarray(length, jnp.float32)
  if kind == "gnmt":
    return ((5.0 + length) / 6.0) ** alpha
  if kind == "average":
    return jnp.maximum(length, 1.0) ** alpha
  raise ValueError(f"length_penalty={kind!r} is invalid; allowed values: {LENGTH_PENALTIES}")


def _limits(limit_B: jax.Array | None, batch_size: int, max_length: int) -> jax.Array:
  if limit_B is None:
    return jnp.full((batch_size,), max_length, jnp.int32)
  return jnp.clip(jnp.asarray(limit_B, jnp.int32), 1, max_length)


# ----------------------------------------------------------------------------- row reductions
# XLA:CPU lowers `argmax` and `top_k` over a long last axis to slow scalar loops (argmax over
# [64, 8000] ~1.2 ms, top_k over [64, 40000] ~5 ms, against ~0.2 ms for a plain max). Both are
# rebuilt from block maxima, which vectorize: the best element lies in the block with the best
# maximum, and the k best lie in the k blocks with the best maxima (ties included, since lower
# blocks win ties and hold the lower indices). Results equal `jnp.argmax` / `lax.top_k` exactly.

_BLOCK = 64


def _blocks(x_NV: jax.Array) -> jax.Array:
  """[N, V] -> [N, ceil(V / _BLOCK), _BLOCK], padded with -inf (padding loses every tie)."""
  N, V = x_NV.shape
  pad = -V % _BLOCK
  if pad:
    x_NV = jnp.pad(x_NV, ((0, 0), (0, pad)), constant_values=-jnp.inf)
  return x_NV.reshape(N, (V + pad) // _BLOCK, _BLOCK)


def row_argmax(x_NV: jax.Array) -> jax.Array:
  """`jnp.argmax(x_NV, axis=-1)` (first maximum) of a 2-D array as int32 [N], via block maxima."""
  if x_NV.shape[-1] <= 4 * _BLOCK:
    return jnp.argmax(x_NV, axis=-1).astype(jnp.int32)
  x_NCL = _blocks(x_NV)
  block_N = jnp.argmax(jnp.max(x_NCL, axis=-1), axis=-1)
  inside_NL = jnp.take_along_axis(x_NCL, block_N[:, None, None], axis=1)[:, 0]
  return (block_N * _BLOCK + jnp.argmax(inside_NL, axis=-1)).astype(jnp.int32)


def row_top_k(x_NV: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """`jax.lax.top_k(x_NV, k)` of a 2-D array (values [N, k], int32 indices [N, k]; ties to the
  lower index)."""
  V = x_NV.shape[-1]
  if V <= 4 * k * _BLOCK:
    return jax.lax.top_k(x_NV, k)
  x_NCL = _blocks(x_NV)
  _, blocks_Nk = jax.lax.top_k(jnp.max(x_NCL, axis=-1), k)
  blocks_Nk = jnp.sort(blocks_Nk, axis=-1)  # index order, so ties still go to the lower index
  pool_NP = jnp.take_along_axis(x_NCL, blocks_Nk[:, :, None], axis=1).reshape(-1, k * _BLOCK)
  values_Nk, pos_Nk = jax.lax.top_k(pool_NP, k)
  block_Nk = jnp.take_along_axis(blocks_Nk, pos_Nk // _BLOCK, axis=1)
  return values_Nk, (block_Nk * _BLOCK + pos_Nk % _BLOCK).astype(jnp.int32)


def _shifted_and_log_normalizer(logits_NV: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(logits - max, log sum exp(logits - max))` per row: log_softmax = first - second [.., None],
  rounded exactly as `jax.nn.log_softmax`, without writing the normalized [N, V] array."""
  shifted_NV = logits_NV - jnp.max(logits_NV, axis=-1, keepdims=True)
  return shifted_NV, jnp.log(jnp.sum(jnp.exp(shifted_NV), axis=-1))


# ----------------------------------------------------------------------------- one path per row


def _single_path(step_fn: StepFn, carry: Any, batch_size: int, max_length: int,
                 limit_B: jax.Array | None, choose: Callable) -> Hypotheses:
  """The loop shared by greedy and sampling: `choose(t, logits_BV) -> tokens_B`."""
  limit_B = _limits(limit_B, batch_size, max_length)

  def cond(state):
    t, _, _, done_B, *_ = state
    return (t < max_length) & ~jnp.all(done_B)

  def body(state):
    t, carry, token_B, done_B, out_BT, logprob_B, length_B = state
    logits_BV, carry = step_fn(carry, token_B)
    logits_BV = logits_BV.astype(jnp.float32)
    next_B = jnp.where(done_B, PAD_ID, choose(t, logits_BV).astype(jnp.int32))
    shifted_BV, log_normalizer_B = _shifted_and_log_normalizer(logits_BV)
    token_logprob_B = (jnp.take_along_axis(shifted_BV, next_B[:, None], axis=1)[:, 0]
                       - log_normalizer_B)
    logprob_B = logprob_B + jnp.where(done_B, 0.0, token_logprob_B)
    length_B = length_B + (~done_B).astype(jnp.int32)
    out_BT = jax.lax.dynamic_update_slice_in_dim(out_BT, next_B[:, None], t, axis=1)
    done_B = done_B | (next_B == EOS_ID) | (t + 1 >= limit_B)
    return t + 1, carry, next_B, done_B, out_BT, logprob_B, length_B

  B = batch_size
  state = (jnp.int32(0), carry, jnp.full((B,), BOS_ID, jnp.int32), jnp.zeros((B,), bool),
           jnp.full((B, max_length), PAD_ID, jnp.int32), jnp.zeros((B,), jnp.float32),
           jnp.zeros((B,), jnp.int32))
  *_, out_BT, logprob_B, length_B = jax.lax.while_loop(cond, body, state)
  return Hypotheses(out_BT[:, None], logprob_B[:, None], logprob_B[:, None], length_B[:, None])


def greedy(step_fn: StepFn, carry: Any, batch_size: int, max_length: int, *,
           limit_B: jax.Array | None = None) -> Hypotheses:
  """The most probable token at every step; one hypothesis per sentence (R = 1)."""
  return _single_path(step_fn, carry, batch_size, max_length, limit_B,
                      lambda t, logits_BV: row_argmax(logits_BV))


def filter_logits(logits_BV: jax.Array, *, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> jax.Array:
  """Logits divided by `temperature`, with -inf outside the `top_k` most probable tokens and
  outside the smallest set whose probability reaches `top_p` (0 / 1.0 switch them off)."""
  logits_BV = logits_BV.astype(jnp.float32) / temperature
  if top_k:
    kth_B1 = row_top_k(logits_BV, top_k)[0][:, -1:]
    logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
  if top_p < 1.0:
    sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV  # mass of the more probable tokens
    # Keep a token while the tokens before it hold less than top_p (the first is always kept).
    threshold_B1 = jnp.min(jnp.where(before_BV < top_p, sorted_BV, jnp.inf), axis=-1,
                           keepdims=True)
    logits_BV = jnp.where(logits_BV < threshold_B1, -jnp.inf, logits_BV)
  return logits_BV


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
  """Raises ValueError naming a sampling setting out of range (`sample`, `SearchOptions`)."""
  if temperature <= 0:
    raise ValueError(f"temperature={temperature} must be > 0 (use greedy for temperature 0)")
  if top_k < 0:
    raise ValueError(f"top_k={top_k} must be >= 0")
  if not 0.0 < top_p <= 1.0:
    raise ValueError(f"top_p={top_p} must be in (0, 1]")


def sample(step_fn: StepFn, carry: Any, rng: jax.Array, batch_size: int, max_length: int, *,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           row_ids_B: jax.Array | None = None, limit_B: jax.Array | None = None) -> Hypotheses:
  """Ancestral sampling from the filtered distribution (`filter_logits`); R = 1.

  Row r draws with `fold_in(fold_in(rng, row_ids_B[r]), t)` (row ids default to 0..B-1), so a
  sentence given the same id gets the same sample whatever else shares its batch. `logprob` is
  under the unfiltered model.
  """
  check_sampling(temperature, top_k, top_p)
  if row_ids_B is None:
    row_ids_B = jnp.arange(batch_size)
  row_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, row_ids_B)

  def choose(t, logits_BV):
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(row_keys, t)
    filtered_BV = filter_logits(logits_BV, temperature=temperature, top_k=top_k, top_p=top_p)
    return jax.vmap(jax.random.categorical)(keys, filtered_BV)

  return _single_path(step_fn, carry, batch_size, max_length, limit_B, choose)


# ----------------------------------------------------------------------------- beam search


class PrefixScorer(NamedTuple):
  """A second score of every prefix that beam search adds to the model's (joint CTC-attention
  decoding: `s2s_jax.ctc.prefix_scorer`). Candidates rank by
  `(1 - weight) * model log-prob + weight * prefix log-prob`, summed over the tokens.

  `score(state, last_token_N) -> (increments_NV, expanded)`: each row's log-score of every
  one-token extension minus that of its prefix (<= 0, -inf for an impossible one; EOS: the
  prefix as the whole output). `select(expanded, rows_N, tokens_N) -> state`: the state of the
  chosen extensions (row n of the new state extends row `rows_N[n]` by `tokens_N[n]`).
  """

  state: Any  # pytree for the N = B*K rows, in whatever layout the scorer keeps
  score: Callable[[Any, jax.Array], tuple[jax.Array, Any]]
  select: Callable[[Any, jax.Array, jax.Array], Any]
  weight: float


class _BeamState(NamedTuple):
  """The beam search loop's state after t steps."""

  t: jax.Array
  carry: Any  # the step function's carry, B*K rows
  token_BK: jax.Array  # each live hypothesis' last token
  alive_BKT: jax.Array  # live hypotheses
  alive_logprob_BK: jax.Array  # -inf for a beam slot not in use
  finished: Hypotheses  # the n-best finished so far (score -inf where none yet)
  done_B: jax.Array  # no live hypothesis can still enter the n-best list
  # With a prefix scorer: its state and the live hypotheses' joint scores; else None and the
  # ranking score is alive_logprob_BK.
  prefix_state: Any = None
  alive_score_BK: jax.Array | None = None


def _top_candidates(increments_NV: jax.Array, alive_BK: jax.Array, M: int
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(score, parent beam, token) of each sentence's M best one-token extensions, [B, M]:
  `alive_BK` plus each row's `increments_NV`."""
  B, K = alive_BK.shape
  V = increments_NV.shape[-1]
  candidates_NV = alive_BK.reshape(B * K)[:, None] + increments_NV
  if V > 8 * K * _BLOCK:
    # The sentence's M best candidates are among each beam's M best (ties to the lower token,
    # then the lower beam, as one top_k over all K*V would break them): rank each row with
    # block maxima first, then the K*M survivors.
    top_NM, top_token_NM = row_top_k(candidates_NV, M)
    score_BM, flat_BM = jax.lax.top_k(top_NM.reshape(B, K * M), M)
    token_BM = jnp.take_along_axis(top_token_NM.reshape(B, K * M), flat_BM, axis=1)
    return score_BM, flat_BM // M, token_BM
  # Small vocabularies: one top_k over every candidate is cheaper.
  score_BM, flat_BM = jax.lax.top_k(candidates_NV.reshape(B, K * V), M)
  return score_BM, flat_BM // V, (flat_BM % V).astype(jnp.int32)


@jax.named_scope("log_softmax")
def _log_softmax(logits_NV: jax.Array) -> jax.Array:
  shifted_NV, log_normalizer_N = _shifted_and_log_normalizer(logits_NV.astype(jnp.float32))
  return shifted_NV - log_normalizer_N[:, None]


def _merge_finished(finished: Hypotheses, cand_BMT: jax.Array, cand_logprob_BM: jax.Array,
                    cand_score_BM: jax.Array, length: jax.Array) -> Hypotheses:
  """The n-best of `finished` and the candidates (score -inf for those that did not end)."""
  B, R = finished.score_BR.shape
  batch_B1 = jnp.arange(B)[:, None]
  score_BR, keep_BR = jax.lax.top_k(jnp.concatenate([finished.score_BR, cand_score_BM], 1), R)
  lengths_BM = jnp.full(cand_score_BM.shape, length, jnp.int32)
  return Hypotheses(
      jnp.concatenate([finished.tokens_BRT, cand_BMT], axis=1)[batch_B1, keep_BR],
      jnp.concatenate([finished.logprob_BR, cand_logprob_BM], axis=1)[batch_B1, keep_BR],
      score_BR,
      jnp.concatenate([finished.length_BR, lengths_BM], axis=1)[batch_B1, keep_BR])


def _candidates(s: _BeamState, logprob_NV: jax.Array, prefix: PrefixScorer | None, M: int
                ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, Any]:
  """Each sentence's M best extensions [B, M]: (ranking score, parent beam, token, model
  log-prob, the prefix scorer's expansion or None)."""
  if prefix is None:
    score_BM, parent_BM, token_BM = _top_candidates(logprob_NV, s.alive_logprob_BK, M)
    return score_BM, parent_BM, token_BM, score_BM, None
  B, K = s.token_BK.shape
  increment_NV, expanded = prefix.score(s.prefix_state, s.token_BK.reshape(B * K))
  joint_NV = (1.0 - prefix.weight) * logprob_NV + prefix.weight * increment_NV
  score_BM, parent_BM, token_BM = _top_candidates(joint_NV, s.alive_score_BK, M)
  batch_B1 = jnp.arange(B)[:, None]
  logprob_BM = (s.alive_logprob_BK[batch_B1, parent_BM]
                + logprob_NV[batch_B1 * K + parent_BM, token_BM])
  return score_BM, parent_BM, token_BM, logprob_BM, expanded


def _check_beam(alpha: float, length_penalty_kind: str, nbest: int, beam_size: int) -> None:
  length_penalty(1, alpha, length_penalty_kind)  # validates the kind
  if alpha < 0:
    raise ValueError(f"alpha={alpha} must be >= 0 (the stopping rule needs a penalty that "
                     "does not shrink with length)")
  if not 1 <= nbest <= beam_size:
    raise ValueError(f"nbest={nbest} must be between 1 and beam_size={beam_size}")


def beam_search(step_fn: StepFn, carry: Any, batch_size: int, beam_size: int, max_length: int,
                *, alpha: float = 0.0, length_penalty_kind: str = "gnmt", nbest: int = 1,
                limit_B: jax.Array | None = None, prefix: PrefixScorer | None = None
                ) -> Hypotheses:
  """Beam search; returns the `nbest` best finished hypotheses of each sentence (R = nbest).

  `carry` (and whatever `step_fn` closes over) has B*K rows: see `tile_beams`. Each step expands
  every live hypothesis by every token and keeps the 2K best candidates: those among the K best
  that end (in EOS, or at the sentence's length limit) compete for the n-best list by score, and
  the K best that do not end live on (as in fairseq; with alpha = 0, beam size 1 is greedy
  search). A sentence is done only when no live hypothesis can still reach the n-best list: with
  log-probabilities <= 0 and a penalty that grows with length, a live hypothesis' score is at
  most `logprob / penalty(limit)`.

  With a `prefix` scorer, candidates rank by the joint score (see `PrefixScorer`) and `score`
  is the joint score over the penalty; `logprob` stays the model's.
  """
  _check_beam(alpha, length_penalty_kind, nbest, beam_size)
  B, K, T, R = batch_size, beam_size, max_length, nbest
  limit_B = _limits(limit_B, B, T)
  best_possible_penalty_B = length_penalty(limit_B, alpha, length_penalty_kind)
  batch_B1 = jnp.arange(B)[:, None]

  def body(s: _BeamState) -> _BeamState:
    # The named scopes label each part's kernels in profiles (benchmarks/profile_decode.py).
    with jax.named_scope("beam_step"):
      logits_NV, carry = step_fn(s.carry, s.token_BK.reshape(B * K))
    M = min(2 * K, K * logits_NV.shape[-1])
    with jax.named_scope("beam_select"):
      cand_score_BM, parent_BM, cand_token_BM, cand_logprob_BM, expanded = _candidates(
          s, _log_softmax(logits_NV), prefix, M)
    with jax.named_scope("beam_history"):
      cand_BMT = s.alive_BKT[batch_B1, parent_BM].at[:, :, s.t].set(cand_token_BM)
    length = s.t + 1
    ends_BM = (cand_token_BM == EOS_ID) | (length >= limit_B)[:, None]
    # Live on: the K best candidates that did not end.
    with jax.named_scope("beam_select"):
      alive_score_BK, pick_BK = jax.lax.top_k(jnp.where(ends_BM, -jnp.inf, cand_score_BM), K)
    rows_N = (batch_B1 * K + parent_BM[batch_B1, pick_BK]).reshape(B * K)
    with jax.named_scope("beam_reorder"):
      carry = gather_rows(carry, rows_N)
    token_BK = cand_token_BM[batch_B1, pick_BK]
    # Finished: the candidates among the K best that ended compete for the n-best list.
    penalty = length_penalty(length, alpha, length_penalty_kind)
    finishes_BM = ends_BM & (jnp.arange(M) < K)[None, :]
    with jax.named_scope("beam_finished"):
      finished_BM = jnp.where(finishes_BM, cand_score_BM / penalty, -jnp.inf)
      finished = _merge_finished(s.finished, cand_BMT, cand_logprob_BM, finished_BM, length)
    best_live_B = jnp.max(alive_score_BK, axis=1) / best_possible_penalty_B
    done_B = best_live_B <= finished.score_BR[:, -1]
    with jax.named_scope("beam_history"):
      alive_BKT = cand_BMT[batch_B1, pick_BK]
    if prefix is None:
      return _BeamState(length, carry, token_BK, alive_BKT, alive_score_BK, finished, done_B)
    return _BeamState(length, carry, token_BK, alive_BKT, cand_logprob_BM[batch_B1, pick_BK],
                      finished, done_B, prefix.select(expanded, rows_N, token_BK.ravel()),
                      alive_score_BK)

  start = _start(carry, B, K, T, R, prefix)
  return jax.lax.while_loop(lambda s: (s.t < T) & ~jnp.all(s.done_B), body, start).finished


def _start(carry: Any, B: int, K: int, T: int, R: int, prefix: PrefixScorer | None
           ) -> _BeamState:
  # Only beam 0 is live at the start, so the first step expands one copy of each sentence.
  alive_BK = jnp.where(jnp.arange(K) == 0, 0.0, -jnp.inf)[None].repeat(B, axis=0)
  return _BeamState(
      jnp.int32(0), carry, jnp.full((B, K), BOS_ID, jnp.int32),
      jnp.full((B, K, T), PAD_ID, jnp.int32), alive_BK,
      Hypotheses(jnp.full((B, R, T), PAD_ID, jnp.int32), jnp.full((B, R), -jnp.inf),
                 jnp.full((B, R), -jnp.inf), jnp.zeros((B, R), jnp.int32)),
      jnp.zeros((B,), bool),
      None if prefix is None else prefix.state, None if prefix is None else alive_BK)
