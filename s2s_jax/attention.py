"""Attention: one table entry per type (`TYPES`), each a small value of pure functions, plus the
score / mask / context math they share.

Shape legend: B batch, T decoder steps, S source positions, H decoder hidden, D encoder output
features (memory), A attention (key) size, K location filters, R location filter width.

Keys are computed once per source sentence (in `model.encode`), so a decoding step only
projects its query:
  Bahdanau (additive):  score(s, h_j) = v . tanh(W_q s + b_q + W_k h_j)   keys = h W_k   [B, S, A]
  Luong dot:            score(s, h_j) = s . h_j                          keys = h       [B, S, D]
  Luong general:        score(s, h_j) = s . (W_a h_j)                    keys = h W_a   [B, S, H]
  Location-aware:       score(s, h_j) = v . tanh(W_q s + b_q + W_k h_j + U f_j),
                        f = F * alpha_prev                               (Chorowski et al. 2015)
The location-aware score is Bahdanau's plus features of where the previous step attended: K
1-D convolutions of width R (odd, centred, zero-padded) over the previous weights, so the
model can move along long acoustic inputs instead of searching them by content alone.

What tells the types apart for the decoder is which state asks (`AttentionType.query`):
  'none'      no attention: every step reads the encoder's final state h_S (Cho 2014), in the
              cell's input and in the readout;
  'previous'  the previous top decoder state s_{t-1} asks before the cell runs, and the context
              enters the cell's input and the readout (Bahdanau, location-aware); the decoder
              must then run step by step;
  'current'   the new top state h_t asks after the cell, and the context enters the readout
              only (Luong); without input feeding the recurrence never reads attention, so
              teacher forcing attends for all T steps in one product.
A new type is one `register(name, AttentionType(...))` call (`tests/test_attention.py` adds one
from the test file); `model.py` runs every type through these fields and never names a type.
'luong/dot' and 'luong/general' are variants: `ModelConfig.attention='luong'` with
`attention_score` choosing one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

NONE, PREVIOUS, CURRENT = "none", "previous", "current"  # which decoder state asks


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


# ----------------------------------------------------------------------------- the types


class Sizes(NamedTuple):
  """What a type's parameters and size checks read of the model."""

  query: int  # H, the decoder state that asks
  memory: int  # D, the encoder outputs attended over
  attention: int | None  # A of additive types (None: H)
  location_filters: int  # K ('location')
  location_width: int  # R ('location')


Params = Mapping[str, Any] | None


def _memory_keys(params: Params, memory_BSD: jax.Array, dtype: Any) -> jax.Array:
  del params, dtype
  return memory_BSD


def _no_check(sizes: Sizes) -> str | None:
  del sizes
  return None


@dataclasses.dataclass(frozen=True)
class AttentionType:
  """One kind of attention as pure functions (see the module docstring for `query`).

  init: `(rng, Sizes, param_dtype) -> params`, the model's `attention` parameters; None: the
    type has none.
  keys: `(params, memory_BSD, dtype) -> keys_BSA`, computed once per source (default: the
    memory itself).
  scores: `(params, query, keys_BSA, prev_weights_BS, dtype) -> scores`, [B, S] for a
    'previous' query [B, H], [B, T, S] for a 'current' one [B, T, H] (`prev_weights_BS` is
    None when T steps attend at once); unused for 'none'.
  carries_weights: each step's weights are carried to the next (`DecoderCarry.align_BS`,
    zeros before the first step), for `scores` to read as `prev_weights_BS`.
  input_feeding: Luong input feeding (the readout r_{t-1} fed to the next step) may be on.
  uses_attention_size: the type reads `ModelConfig.attention_size` (A).
  check: `(Sizes) -> None or what is wrong`, e.g. 'dot' needs D == H.
  """

  query: str
  init: Callable[[jax.Array, Sizes, Any], dict] | None = None
  keys: Callable[[Params, jax.Array, Any], jax.Array] = _memory_keys
  scores: Callable[..., jax.Array] | None = None
  carries_weights: bool = False
  input_feeding: bool = False
  uses_attention_size: bool = False
  check: Callable[[Sizes], str | None] = _no_check

  def __post_init__(self):
    if self.query not in (NONE, PREVIOUS, CURRENT):
      raise ValueError(f"AttentionType.query={self.query!r}; allowed: {NONE!r}, {PREVIOUS!r}, "
                       f"{CURRENT!r}")
    if (self.scores is None) != (self.query == NONE):
      raise ValueError("AttentionType: scores is required, except for query='none'")

  @property
  def has_weights(self) -> bool:
    """Whether the type computes attention weights (all but 'none')."""
    return self.query != NONE

  def context_input_size(self, sizes: Sizes) -> int:
    """Size the context adds to the cell's input: D unless the context comes after the cell."""
    return 0 if self.query == CURRENT else sizes.memory

  def recurrent(self, input_feeding: bool) -> bool:
    """Whether each step's input depends on attention, so teacher forcing must scan steps."""
    return self.query == PREVIOUS or self.carries_weights or input_feeding


def _matmul(x: jax.Array, w: jax.Array, dtype: Any) -> jax.Array:
  """`x @ w` with inputs in the compute dtype, accumulated in float32 (as `rnn.matmul`)."""
  return jnp.einsum("...d,dg->...g", x.astype(dtype), w.astype(dtype),
                    preferred_element_type=jnp.float32)


def _projected_keys(name: str) -> Callable[[Params, jax.Array, Any], jax.Array]:
  def keys(params, memory_BSD, dtype):
    return _matmul(memory_BSD, params[name], dtype).astype(dtype)
  return keys


def _additive_init(rng: jax.Array, sizes: Sizes, param_dtype: Any, location: bool = False
                   ) -> dict:
  size = sizes.attention or sizes.query
  lecun = jax.nn.initializers.lecun_normal()
  k_q, k_k, k_v, k_f, k_u = jax.random.split(rng, 5)
  params = {"query": {"W": lecun(k_q, (sizes.query, size), param_dtype),
                      "b": jnp.zeros((size,), param_dtype)},
            "W_k": lecun(k_k, (sizes.memory, size), param_dtype),
            "v": jax.nn.initializers.normal(size ** -0.5)(k_v, (size,), param_dtype)}
  if location:
    R, K = sizes.location_width, sizes.location_filters
    params["F"] = jax.nn.initializers.normal(R ** -0.5)(k_f, (R, K), param_dtype)
    params["U"] = lecun(k_u, (K, size), param_dtype)
  return params


def _additive_query(params: Params, s_BH: jax.Array, dtype: Any) -> jax.Array:
  """W_q s + b_q: [B, H] -> float32 [B, A]."""
  return _matmul(s_BH, params["query"]["W"], dtype) + params["query"]["b"].astype(jnp.float32)


def _bahdanau(params, s_BH, keys_BSA, prev_weights_BS, dtype):
  del prev_weights_BS
  return bahdanau_scores(_additive_query(params, s_BH, dtype), keys_BSA.astype(jnp.float32),
                         params["v"].astype(jnp.float32))


def _location(params, s_BH, keys_BSA, prev_weights_BS, dtype):
  location_BSK = location_features(prev_weights_BS, params["F"])
  return location_scores(_additive_query(params, s_BH, dtype), keys_BSA.astype(jnp.float32),
                         location_BSK, params["U"], params["v"].astype(jnp.float32))


def _luong(params, h_BTH, keys_BSH, prev_weights_BS, dtype):
  del params, prev_weights_BS
  return luong_scores(h_BTH.astype(dtype), keys_BSH)


def _general_init(rng: jax.Array, sizes: Sizes, param_dtype: Any) -> dict:
  return {"W_a": jax.nn.initializers.lecun_normal()(rng, (sizes.memory, sizes.query),
                                                    param_dtype)}


def _same_sizes(sizes: Sizes) -> str | None:
  if sizes.memory == sizes.query:
    return None
  return (f"needs the encoder output size ({sizes.memory}) to equal hidden_size "
          f"({sizes.query})")


TYPES: dict[str, AttentionType] = {
    "none": AttentionType(NONE),
    "bahdanau": AttentionType(PREVIOUS, init=_additive_init, keys=_projected_keys("W_k"),
                              scores=_bahdanau, uses_attention_size=True),
    "luong/dot": AttentionType(CURRENT, scores=_luong, input_feeding=True, check=_same_sizes),
    "luong/general": AttentionType(CURRENT, init=_general_init, keys=_projected_keys("W_a"),
                                   scores=_luong, input_feeding=True),
    "location": AttentionType(
        PREVIOUS, init=lambda rng, sizes, dtype: _additive_init(rng, sizes, dtype, True),
        keys=_projected_keys("W_k"), scores=_location, carries_weights=True,
        uses_attention_size=True),
}
"""The attention types by name; 'name/variant' entries are chosen by `ModelConfig.attention`
and `attention_score` together."""


def register(name: str, kind: AttentionType) -> None:
  """Adds a type to `TYPES` (`ModelConfig.attention=name`; 'name/variant' for a variant)."""
  if name in TYPES:
    raise ValueError(f"attention type {name!r} is already registered")
  TYPES[name] = kind


def names() -> tuple[str, ...]:
  """The values of `ModelConfig.attention`, in registration order."""
  return tuple(dict.fromkeys(name.split("/")[0] for name in TYPES))


def variants(name: str | None = None) -> tuple[str, ...]:
  """The values of `ModelConfig.attention_score`: of type `name`, or of every type."""
  return tuple(dict.fromkeys(key.split("/")[1] for key in TYPES
                             if "/" in key and name in (None, key.split("/")[0])))


def lookup(name: str, variant: str) -> AttentionType:
  """The type `name` ('luong'), or its `variant` ('dot') when it has variants."""
  return TYPES[f"{name}/{variant}"] if variants(name) else TYPES[name]
