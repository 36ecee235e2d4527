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
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax import ctc, decoding
from s2s_jax import model as model_lib
from s2s_jax.special_ids import PAD_ID

METHODS = ("beam", "greedy", "sample", "ctc_greedy")


def _option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
  """A `SearchOptions` field: its default, help text and allowed values (decode.py's flags)."""
  return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass(frozen=True)
class SearchOptions:
  """How to search. Compiled in: each distinct value set compiles once per input shape.

  Each field's help (in its metadata) is also its decode.py flag's help: decode.py declares one
  flag per field, with the field's name, type and default.
  """

  method: str = _option("beam", "Search method (beam_size 1 runs greedy; ctc_greedy: the CTC "
                                "head's best path, repeats merged, blanks dropped).", METHODS)
  beam_size: int = _option(5, "Beam width K (1 = greedy).")
  nbest: int = _option(1, "Hypotheses per input, best first (<= beam_size; for sampling, the "
                          "samples drawn); decode.py writes TSV (index, rank, score, text) "
                          "for > 1.")
  alpha: float = _option(0.6, "Length penalty exponent; beams rank by logprob / penalty(length) "
                              "(0 = the plain sum).")
  length_penalty: str = _option("gnmt", "Length penalty: 'gnmt' ((5 + length) / 6) ** alpha or "
                                        "'average' length ** alpha.", decoding.LENGTH_PENALTIES)
  max_len: int = _option(256, "Absolute cap on output tokens (EOS included).")
  max_len_ratio: float = _option(
      2.0, "Output tokens <= ceil(ratio * source tokens) + max_len_offset; for a speech model "
           "the ratio multiplies feature frames (100 a second) and its run's "
           "train.max_decode_length_factor is the default.")
  max_len_offset: int = _option(10, "See max_len_ratio.")
  temperature: float = _option(1.0, "Sampling temperature.")
  top_k: int = _option(0, "Sample from the k most probable tokens (0 = all).")
  top_p: float = _option(1.0, "Nucleus sampling: the smallest set of tokens holding this "
                              "probability mass (1 = off).")
  ctc_weight: float = _option(
      0.0, "Joint CTC-attention beam search (beam_size > 1): candidates rank by (1 - w) * "
           "attention + w * CTC prefix log-probability (needs a model with a CTC head; 0 = the "
           "attention beam; its run's model.ctc_weight is the default).")

  def __post_init__(self):
    types = typing.get_type_hints(SearchOptions)
    for field in dataclasses.fields(self):
      check_type(field.name, getattr(self, field.name), types[field.name])
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
    if not 0.0 <= self.ctc_weight <= 1.0:
      raise ValueError(f"ctc_weight={self.ctc_weight} must be in [0, 1]")
    if self.max_len_ratio <= 0:
      raise ValueError(f"max_len_ratio={self.max_len_ratio} must be > 0")
    if self.max_len_offset < 0:
      raise ValueError(f"max_len_offset={self.max_len_offset} must be >= 0")
    decoding.check_sampling(self.temperature, self.top_k, self.top_p)
    decoding.length_penalty(1, self.alpha, self.length_penalty)  # validates the kind

  def limit(self, units: Any) -> Any:
    """Most output tokens (EOS included) for inputs of `units` (source tokens without EOS, or
    feature frames): `min(max_len, ceil(max_len_ratio * units) + max_len_offset)`.

    The one formula for both the per-sentence limits inside the search (`units` a jax array
    [B]) and the static output length (a host int): float32 arithmetic in both, so the static
    length is exactly the limit of the longest input the padded shape can hold.
    """
    xp = jnp if isinstance(units, jax.Array) else np
    scaled = xp.float32(self.max_len_ratio) * xp.asarray(units).astype(xp.float32)
    limit = xp.minimum(xp.ceil(scaled).astype(xp.int32) + self.max_len_offset, self.max_len)
    return limit if xp is jnp else int(limit)

  def output_length(self, source_length: int) -> int:
    """The static output length T for token sources padded to `source_length` (EOS included)."""
    return self.limit(max(source_length - 1, 0))


_TYPE_NAMES = {int: "an int", float: "a number", str: "a str"}


def check_type(name: str, value: Any, kind: type) -> None:
  """TypeError unless `value` is a `kind`: an int (not a bool or a float) for int, an int or
  a float for float (SearchOptions' fields, Model.decode's arguments)."""
  if kind is int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
  elif kind is float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
  else:
    ok = isinstance(value, kind)
  if not ok:
    raise TypeError(f"{name}={value!r} ({type(value).__name__}) must be "
                    f"{_TYPE_NAMES.get(kind, kind.__name__)}")


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


def run_options(config: Mapping[str, Any], cfg: ModelConfigs, *, evaluation: bool = False
                ) -> SearchOptions:
  """The search a run's config (`config.json`, or the ConfigDict training runs) implies for
  its model: the one place that reads search defaults from a config.

  Decoding (decode.py, `Model.decode`) starts from `SearchOptions()`, except that a speech
  model's output limit per feature frame is its run's `train.max_decode_length_factor` (frames
  come 100 a second: the text default, 2 per token, would let a 1-second utterance search 210
  steps), and a model with a CTC head searches jointly with its training weight
  `model.ctc_weight` (the smallest of an ensemble's). Training's evaluation (`evaluation=True`)
  decodes greedily (a CTC-only model with `ctc_greedy`), every model up to
  `train.max_decode_length_factor` * length + 10 tokens, with no absolute cap.
  """
  factor = (config.get("train") or {}).get("max_decode_length_factor")
  first = _first(cfg)
  if evaluation:  # a CTC-only model's decoder is untrained: its greedy search is the CTC's
    return SearchOptions(method="ctc_greedy" if first.ctc_weight == 1 else "greedy",
                         max_len_ratio=factor, max_len_offset=10, max_len=1 << 16)
  ctc_weight = min(member.ctc_weight for member in _configs(cfg))
  if first.source != "audio":
    return SearchOptions(ctc_weight=ctc_weight)
  return SearchOptions(max_len_ratio=factor or 0.25, ctc_weight=ctc_weight)


ModelConfigs = model_lib.ModelConfig | tuple[model_lib.ModelConfig, ...]


def ensemble_logprobs(logits_MNV: Sequence[jax.Array]) -> jax.Array:
  """log of the members' mean next-token probability [N, V]: the ensemble's distribution."""
  logp_MNV = jnp.stack([jax.nn.log_softmax(x.astype(jnp.float32), axis=-1) for x in logits_MNV])
  return jax.nn.logsumexp(logp_MNV, axis=0) - math.log(len(logits_MNV))


def _configs(cfg: ModelConfigs) -> tuple[model_lib.ModelConfig, ...]:
  """The member configs (one for a single model)."""
  return cfg if isinstance(cfg, tuple) else (cfg,)


def _first(cfg: ModelConfigs) -> model_lib.ModelConfig:
  return _configs(cfg)[0]


def source_units(cfg: ModelConfigs, src: Any) -> jax.Array:
  """Each input's length in the units `max_len_ratio` multiplies [B]: source tokens without the
  EOS, or for an audio source (`(waveforms [B, N], samples [B])`) its feature frames."""
  first = _first(cfg)
  if first.source == "audio":
    return first.source_steps(src[1])
  return jnp.sum(src != PAD_ID, axis=1) - 1


def output_length(cfg: ModelConfigs, opts: SearchOptions, src: Any) -> int:
  """The static output length T of a search over the batch `src` (as `search` takes it): the
  limit of the longest input its padded shape holds."""
  first = _first(cfg)
  if first.source == "audio":
    return opts.limit(int(first.source_steps(src[0].shape[1])))
  return opts.limit(max(src.shape[1] - 1, 0))


def check_ctc(cfg: ModelConfigs, opts: SearchOptions) -> None:
  """Raises ValueError (one line naming the option) when `opts` needs a CTC head that a model
  lacks."""
  if opts.method == "ctc_greedy":
    need = "method='ctc_greedy'"
  elif opts.method == "beam" and opts.ctc_weight > 0:
    need = f"ctc_weight={opts.ctc_weight}"
  else:
    return
  if not all(member.has_ctc for member in _configs(cfg)):
    raise ValueError(f"{need} needs a model with a CTC head (trained with model.ctc_weight > 0); "
                     "this model has none: use ctc_weight=0 and another method")


def _ctc_log_probs(members: Sequence[tuple[Any, Any]], enc: Sequence[model_lib.Encoded]
                   ) -> jax.Array:
  """CTC log-probabilities [B, F, V] of the inputs; an ensemble's are the log of its members'
  mean per-frame probability (they must share the CTC frames)."""
  logp = [ctc.log_probs(*model_lib.ctc_logits(p, c, e)) for (c, p), e in zip(members, enc,
                                                                             strict=True)]
  if len({x.shape for x in logp}) > 1:
    shapes = [x.shape for x in logp]
    raise ValueError("an ensemble's CTC heads must give the same frames (encoder_reduce, "
                     f"encoder_layers and ctc_upsample alike); got shapes {shapes}")
  return logp[0] if len(logp) == 1 else jax.nn.logsumexp(jnp.stack(logp), 0) - math.log(len(logp))


def search(params: Any, cfg: ModelConfigs, src_BS: Any, opts: SearchOptions,
           max_length: int, rng: jax.Array | None = None,
           row_ids_B: jax.Array | None = None) -> decoding.Hypotheses:
  """Encodes `src_BS` (int32, trailing PAD, EOS-terminated; for an audio model
  `(waveforms [B, N], samples [B])`) and searches; pure.

  Each input's output limit comes from its own length (`SearchOptions.limit`, `source_units`),
  capped by the static `max_length`. Greedy and sampling scores are normalized like beam
  scores, so `score` means the same for every method. A tuple of configs (and the matching
  tuple of parameter trees) is an ensemble: every step uses `ensemble_logprobs` of the
  members' logits. With `ctc_weight` > 0 the beam adds CTC prefix scores (`s2s_jax.ctc`);
  `ctc_greedy` reads only the CTC head.
  """
  check_ctc(cfg, opts)
  B = jax.tree.leaves(src_BS)[0].shape[0]
  limit_B = jnp.minimum(opts.limit(source_units(cfg, src_BS)), max_length)
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

  if opts.method == "ctc_greedy":
    return ctc.greedy(_ctc_log_probs(members, enc), max_length, limit_B)
  if opts.method == "beam" and opts.beam_size > 1:
    K = opts.beam_size
    tiled = decoding.tile_beams(enc, K)
    prefix = None
    if opts.ctc_weight > 0:
      prefix = ctc.prefix_scorer(_ctc_log_probs(members, enc), K, opts.ctc_weight)
    return decoding.beam_search(step_fn_over(tiled), initial_carry(tiled), B, K, max_length,
                                alpha=opts.alpha, length_penalty_kind=opts.length_penalty,
                                nbest=opts.nbest, limit_B=limit_B, prefix=prefix)
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


_search_jit = jax.jit(search, static_argnames=("cfg", "opts", "max_length"))


def search_jit(params: Any, cfg: ModelConfigs, src_BS: Any, opts: SearchOptions,
               max_length: int | None = None, rng: jax.Array | None = None,
               row_ids_B: jax.Array | None = None) -> decoding.Hypotheses:
  """`search` compiled; one compilation per (configs, options, max_length, input shapes).
  `max_length` defaults to `output_length` of the batch."""
  if max_length is None:
    max_length = output_length(cfg, opts, src_BS)
  return _search_jit(params, cfg, src_BS, opts, max_length, rng, row_ids_B)
