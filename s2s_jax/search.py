"""The search behind every decode: source ids (or audio) in, hypotheses out, for one model or an
ensemble.

`search` is one pure function used by `Model.decode`, `export`, decode.py and training's
evaluation (greedy `SearchOptions`): every sentence's output limit comes from its own source
length, so the output for a sentence does not depend on what shares its batch.

Shape legend: B sentences, S source length (EOS included), R hypotheses per sentence, T output
length, K beam size, M ensemble members, N rows searched (B * K), V target vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from s2s_jax import decoding, features
from s2s_jax import model as model_lib
from s2s_jax.special_ids import PAD_ID

METHODS = ("beam", "greedy", "sample")


@dataclasses.dataclass(frozen=True)
class SearchOptions:
  """How to search. Compiled in: each distinct value set compiles once per input shape.

  method: 'beam', 'greedy' or 'sample' (beam_size 1 runs greedy).
  beam_size, nbest: beam width K and hypotheses returned per sentence (<= K; for sampling the
    number of samples drawn per sentence, best first).
  alpha, length_penalty: beam ranking `logprob / penalty(length)`, penalty 'gnmt'
    ((5 + length) / 6) ** alpha or 'average' length ** alpha (see `s2s_jax.decoding`).
  max_len: absolute cap on output tokens (EOS included).
  max_len_ratio, max_len_offset: a sentence's outputs have at most
    `ceil(max_len_ratio * source tokens) + max_len_offset` tokens (and at most max_len); for
    an audio model the ratio multiplies feature frames (100 a second), so e.g. 0.25 allows
    25 characters a second.
  temperature, top_k, top_p: sampling filters.
  """

  method: str = "beam"
  beam_size: int = 5
  nbest: int = 1
  alpha: float = 0.6
  length_penalty: str = "gnmt"
  max_len: int = 256
  max_len_ratio: float = 2.0
  max_len_offset: int = 10
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"method={self.method!r} is invalid; allowed values: {METHODS}")
    for name in ("beam_size", "nbest", "max_len"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
    if self.method == "beam" and self.nbest > self.beam_size:
      raise ValueError(f"nbest={self.nbest} must not exceed beam_size={self.beam_size}")
    if self.method == "greedy" or (self.method == "beam" and self.beam_size == 1):
      if self.nbest != 1:
        raise ValueError(f"nbest={self.nbest}: greedy search (beam_size 1) has one hypothesis")
    if self.max_len_ratio <= 0:
      raise ValueError(f"max_len_ratio={self.max_len_ratio} must be > 0")
    decoding.length_penalty(1, self.alpha, self.length_penalty)  # validates the kind

  def output_length(self, source_length: int) -> int:
    """The static output length T for sources padded to `source_length` (EOS included)."""
    return self.limit(max(source_length - 1, 0))

  def limit(self, units: int) -> int:
    """Most output tokens for an input of `units` (source tokens without EOS, or frames)."""
    return min(self.max_len, math.ceil(self.max_len_ratio * units) + self.max_len_offset)


def with_overrides(options: SearchOptions, overrides: Mapping[str, Any]) -> SearchOptions:
  """`options` with the named fields replaced, e.g. `{"beam_size": 1}`.

  Raises:
    TypeError: a name is not a `SearchOptions` field (the message lists the fields).
  """
  fields = [f.name for f in dataclasses.fields(SearchOptions)]
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise TypeError(f"unknown search option(s) {unknown}; the options are {fields}")
  return dataclasses.replace(options, **overrides)


ModelConfigs = model_lib.ModelConfig | tuple[model_lib.ModelConfig, ...]


def ensemble_logprobs(logits_MNV: Sequence[jax.Array]) -> jax.Array:
  """log of the members' mean next-token probability [N, V]: the ensemble's distribution."""
  logp_MNV = jnp.stack([jax.nn.log_softmax(x.astype(jnp.float32), axis=-1) for x in logits_MNV])
  return jax.nn.logsumexp(logp_MNV, axis=0) - math.log(len(logits_MNV))


def _first(cfg: ModelConfigs) -> model_lib.ModelConfig:
  return cfg[0] if isinstance(cfg, tuple) else cfg


def source_lengths(cfg: ModelConfigs, src: Any) -> jax.Array:
  """Each input's length in the units `max_len_ratio` multiplies [B]: source tokens without the
  EOS, or for an audio source (`(waveforms [B, N], samples [B])`) its feature frames."""
  first = _first(cfg)
  if first.source == "audio":
    return features.num_frames(src[1], first.feature_config)
  return jnp.sum(src != PAD_ID, axis=1) - 1


def output_length(cfg: ModelConfigs, opts: SearchOptions, src: Any) -> int:
  """The static output length T of a search over the batch `src` (as `search` takes it): the
  limit of its longest possible input, from the padded shape alone."""
  first = _first(cfg)
  if first.source == "audio":
    return opts.limit(int(features.num_frames(src[0].shape[1], first.feature_config)))
  return opts.output_length(src.shape[1])


def search(params: Any, cfg: ModelConfigs, src_BS: Any, opts: SearchOptions,
           max_length: int, rng: jax.Array | None = None,
           row_ids_B: jax.Array | None = None) -> decoding.Hypotheses:
  """Encodes `src_BS` (int32, trailing PAD, EOS-terminated; for an audio model
  `(waveforms [B, N], samples [B])`) and searches; pure.

  Each input's output limit comes from its own length (`SearchOptions`, `source_lengths`),
  capped by the static `max_length`. Greedy and sampling scores are normalized like beam
  scores, so `score` means the same for every method. A tuple of configs (and the matching
  tuple of parameter trees) is an ensemble: every step uses `ensemble_logprobs` of the
  members' logits.
  """
  B = jax.tree.leaves(src_BS)[0].shape[0]
  words_B = source_lengths(cfg, src_BS)
  limit_B = jnp.minimum(
      jnp.ceil(opts.max_len_ratio * words_B).astype(jnp.int32) + opts.max_len_offset,
      min(opts.max_len, max_length))
  members = tuple(zip(cfg, params, strict=True)) if isinstance(cfg, tuple) else ((cfg, params),)
  # One Encoded and one DecoderCarry per member; the search reorders them all as one pytree.
  enc = tuple(model_lib.encode(p, c, src_BS) for c, p in members)

  def initial_carry(enc_rows):
    return tuple(e.initial_carry for e in enc_rows)

  def step_fn_over(enc_rows):
    def step_fn(carry, token_N):
      outs = [model_lib.decode_step(p, c, e, k, token_N)
              for (c, p), e, k in zip(members, enc_rows, carry, strict=True)]
      logits_NV = outs[0][0] if len(outs) == 1 else ensemble_logprobs([o[0] for o in outs])
      return logits_NV, tuple(o[1] for o in outs)
    return step_fn

  if opts.method == "beam" and opts.beam_size > 1:
    K = opts.beam_size
    tiled = decoding.tile_beams(enc, K)
    return decoding.beam_search(step_fn_over(tiled), initial_carry(tiled), B, K, max_length,
                                alpha=opts.alpha, length_penalty_kind=opts.length_penalty,
                                nbest=opts.nbest, limit_B=limit_B)
  if opts.method == "sample":
    R = opts.nbest
    tiled = decoding.tile_beams(enc, R)
    ids_B = jnp.arange(B) if row_ids_B is None else row_ids_B
    out = decoding.sample(step_fn_over(tiled), initial_carry(tiled), rng, B * R, max_length,
                          temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                          row_ids_B=(ids_B[:, None] * R + jnp.arange(R)).reshape(B * R),
                          limit_B=jnp.repeat(limit_B, R))
    out = jax.tree.map(lambda x: x.reshape(B, R, *x.shape[2:]), out)
  else:
    out = decoding.greedy(step_fn_over(enc), initial_carry(enc), B, max_length, limit_B=limit_B)
  score_BR = out.logprob_BR / decoding.length_penalty(out.length_BR, opts.alpha,
                                                      opts.length_penalty)
  order_BR = jnp.argsort(-score_BR, axis=1)  # best first (matters for several samples)
  return decoding.Hypotheses(*(jnp.take_along_axis(x, order_BR[..., None], axis=1)
                               if x.ndim == 3 else jnp.take_along_axis(x, order_BR, axis=1)
                               for x in (out.tokens_BRT, out.logprob_BR, score_BR,
                                         out.length_BR)))


search_jit = jax.jit(search, static_argnames=("cfg", "opts", "max_length"))
"""`search` compiled; one compilation per (configs, options, max_length, input shapes)."""
