"""Encoder-decoder RNNs: the frozen `ModelConfig`, the model math as pure functions, and `Seq2Seq`.

Shape legend: B batch, S source length, T target length, E embedding, H decoder hidden units,
D encoder output features (the memory attention reads; also the size of a merged encoder final
state), A additive (Bahdanau / location) attention size, K location filters, R readout size,
V vocabulary.

The model (Sutskever 2014, Cho 2014, Bahdanau 2015, Luong 2015):
  encoder   embedding -> (bi)RNN stack; dropout on embeddings and between layers.
  bridge    each encoder layer's final state (a bidirectional layer's forward and backward final
            states merged like its outputs: concatenated [2H_e] or summed [H_e]) becomes the
            decoder's initial state: 'copy' when the layer counts and sizes match, 'project'
            (each decoder layer's state component = tanh(W [that component of every encoder
            layer, concatenated] + b)), or 'zero'; 'auto' copies when it can and projects otherwise.
  decoder   one step function, `_decoder_step`:
              x_t   = [emb(y_{t-1}); extra]   extra = h_S for attention='none' (the encoder's
                      top final state, the fixed context of Cho 2014), the Bahdanau (or
                      location-aware: it also reads the previous step's weights) context
                      computed from the previous top decoder state, the previous readout r_{t-1}
                      for Luong input feeding, or nothing for plain Luong attention.
              h_t   = the stacked cells' new top state
              ctx_t = h_S, the Bahdanau context, or the Luong context computed from h_t
              r_t   = tanh(W_r [h_t; ctx_t] + b_r)     (R = E when embeddings are tied, else H)
            logits_t = dropout(r_t) W_V + b_V        (W_V = target embedding^T when tied)
  Two drivers run that step: `decode_step` (one step, for search) and the teacher-forced `decode`.
  When the recurrence does not pass through attention (attention='none', or Luong without input
  feeding) `decode` runs the same cells layer by layer with hoisted input projections and then
  attends for all T steps in one batched product; otherwise it scans `_decoder_step` over time.

Token ids 0 pad, 1 bos, 2 eos, 3 unk are fixed (`special_ids`). Source padding must be trailing:
the source mask is `src != PAD_ID`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax import attention as attn
from s2s_jax import features, rnn
from s2s_jax.special_ids import NUM_SPECIAL_IDS, PAD_ID

ATTENTION_TYPES = ("none", "bahdanau", "luong", "location")
ATTENTION_SCORES = ("dot", "general")
BRIDGE_MODES = ("auto", "copy", "project", "zero")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
SOURCES = ("tokens", "audio")
PARAM_DTYPES = ("float32", "bfloat16")


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyperparameters of a `Seq2Seq` model, validated on construction.

  Invalid values raise `ValueError` naming the field and what is allowed.
  """

  src_vocab_size: int
  tgt_vocab_size: int
  cell: str = "lstm"  # 'lstm', 'gru' or 'rnn' (Elman, tanh); encoder and decoder alike
  embed_size: int = 256  # E, source and target embeddings
  hidden_size: int = 512  # H, decoder units per layer
  encoder_hidden_size: int | None = None  # encoder units per layer and direction; None: hidden_size
  encoder_layers: int = 2
  decoder_layers: int = 2
  bidirectional: bool = True  # bidirectional encoder layers
  bidirectional_merge: str = "concat"  # 'concat' ([fw; bw], 2x units) or 'sum' (fw + bw)
  residual: bool = False  # residual connections from the second layer of each stack on
  dropout: float = 0.0  # on embeddings, between layers, and before the output projection
  # 'none', 'bahdanau' (additive), 'luong' (multiplicative) or 'location' (additive + where the
  # previous step attended; Chorowski et al. 2015, for long acoustic inputs)
  attention: str = "luong"
  attention_score: str = "general"  # Luong score: 'dot' or 'general'; used by attention='luong'
  attention_size: int | None = None  # A for 'bahdanau' / 'location'; None: hidden_size
  location_filters: int = 10  # K convolution filters over the previous weights ('location')
  location_width: int = 31  # R, their (odd) width in source positions ('location')
  input_feeding: bool = False  # Luong input feeding: feed r_{t-1} to the next step
  bridge: str = "auto"  # 'auto', 'copy', 'project' or 'zero' (see the module docstring)
  tie_embeddings: bool = False  # output projection = target embedding^T (readout size becomes E)
  share_embeddings: bool = False  # one embedding table for source and target (same vocabulary)
  forget_bias: float = 1.0  # initial LSTM forget-gate bias
  dtype: str = "float32"  # compute dtype of matmuls; states, softmaxes and logits stay float32
  param_dtype: str = "float32"  # dtype the parameters are stored in
  scan_unroll: int = 1  # lax.scan unroll factor of the recurrent loops
  # Speech: source='audio' reads int16 waveforms with their lengths, `(audio_BN, num_samples_B)`,
  # instead of token ids; the encoder reads their log-mel features, computed on device
  # (s2s_jax.features). src_vocab_size is then unused.
  source: str = "tokens"  # 'tokens' or 'audio'
  num_mels: int = 80  # F, mel bins of the features (source='audio')
  sample_rate: int = 16000  # Hz of the waveforms (source='audio')
  spec_augment: bool = False  # SpecAugment masks on the features while training ('audio')
  encoder_reduce: int = 1  # pyramidal encoder (LAS): layers from the second on read this many
  # stacked frames of the layer below, so the memory has ceil(S / r ** (layers - 1)) steps

  def __post_init__(self) -> None:
    # An audio source has no vocabulary: its src_vocab_size is unused (0 from a run's data).
    vocabularies = ("tgt_vocab_size",) if self.source == "audio" else ("src_vocab_size",
                                                                       "tgt_vocab_size")
    for name in vocabularies:
      _check_int(name, getattr(self, name), NUM_SPECIAL_IDS + 1,
                 f"ids 0-{NUM_SPECIAL_IDS - 1} are reserved for pad/bos/eos/unk")
    for name in ("embed_size", "hidden_size", "encoder_layers", "decoder_layers", "scan_unroll",
                 "location_filters", "location_width", "num_mels", "sample_rate",
                 "encoder_reduce"):
      _check_int(name, getattr(self, name), 1)
    for name in ("encoder_hidden_size", "attention_size"):
      if getattr(self, name) is not None:
        _check_int(name, getattr(self, name), 1, "or None")
    for name, allowed in (("cell", rnn.CELL_TYPES), ("bidirectional_merge", rnn.MERGE_MODES),
                          ("attention", ATTENTION_TYPES), ("attention_score", ATTENTION_SCORES),
                          ("bridge", BRIDGE_MODES), ("dtype", COMPUTE_DTYPES),
                          ("source", SOURCES),
                          ("param_dtype", PARAM_DTYPES)):
      value = getattr(self, name)
      if value not in allowed:
        raise ValueError(f"ModelConfig.{name}={value!r} is invalid; allowed values: "
                         + ", ".join(repr(a) for a in allowed))
    for name in ("bidirectional", "residual", "input_feeding", "tie_embeddings",
                 "share_embeddings", "spec_augment"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r} is invalid; "
                         "allowed values: True, False")
    if (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
        or not 0.0 <= self.dropout < 1.0):
      raise ValueError(f"ModelConfig.dropout={self.dropout!r} is invalid; "
                       "allowed values: a float in [0, 1)")
    if (isinstance(self.forget_bias, bool) or not isinstance(self.forget_bias, (int, float))
        or not math.isfinite(self.forget_bias)):
      raise ValueError(f"ModelConfig.forget_bias={self.forget_bias!r} is invalid; "
                       "allowed values: a finite number")

    self._check_combinations()

  def _check_combinations(self) -> None:
    if self.input_feeding and self.attention != "luong":
      raise ValueError(f"ModelConfig.input_feeding=True needs attention='luong' (got "
                       f"attention={self.attention!r}); Bahdanau attention always feeds its "
                       "context")
    if self.attention_size is not None and not self.additive_attention:
      raise ValueError(f"ModelConfig.attention_size is only used by attention='bahdanau' or "
                       f"'location' (got attention={self.attention!r}); leave it None")
    if self.location_width % 2 == 0:
      raise ValueError(f"ModelConfig.location_width={self.location_width} must be odd (the "
                       "filters are centred on each source position)")
    if self.attention == "luong" and self.attention_score == "dot" \
        and self.memory_size != self.hidden_size:
      raise ValueError(
          f"ModelConfig.attention_score='dot' needs the encoder output size ({self.memory_size}: "
          f"encoder_hidden_size={self.encoder_size}, bidirectional={self.bidirectional}, "
          f"bidirectional_merge={self.bidirectional_merge!r}) to equal hidden_size="
          f"{self.hidden_size}; use attention_score='general' or matching sizes")
    if self.bridge == "copy" and not self.can_copy_states:
      raise ValueError(
          f"ModelConfig.bridge='copy' needs encoder_layers == decoder_layers (got "
          f"{self.encoder_layers} and {self.decoder_layers}) and an encoder final-state size "
          f"({self.memory_size}) equal to hidden_size ({self.hidden_size}); use 'auto' or "
          "'project'")
    if self.source == "audio" and self.share_embeddings:
      raise ValueError("ModelConfig.share_embeddings=True needs a token source; "
                       "source='audio' has no source embedding")
    if self.encoder_reduce > 1 and self.residual:
      raise ValueError(f"ModelConfig.encoder_reduce={self.encoder_reduce} needs residual=False: "
                       "a pyramidal layer's input and output differ in length")
    if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
      raise ValueError(
          f"ModelConfig.share_embeddings=True needs src_vocab_size == tgt_vocab_size (got "
          f"{self.src_vocab_size} and {self.tgt_vocab_size})")

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
    """Builds a config from a mapping (e.g. a ConfigDict's `to_dict()`); unknown keys raise."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
      raise ValueError(f"ModelConfig has no field(s) {', '.join(unknown)}; "
                       f"fields: {', '.join(sorted(fields))}")
    return cls(**dict(values))

  @classmethod
  def for_vocabularies(cls, values: Mapping[str, Any], src_vocab_size: int,
                       tgt_vocab_size: int) -> ModelConfig:
    """A run's model config: its config's `model` section (without vocabulary sizes) plus the
    sizes of the vocabularies its tokenizers built. Training and loading both use this."""
    return cls.from_dict({**values, "src_vocab_size": src_vocab_size,
                          "tgt_vocab_size": tgt_vocab_size})

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  # Derived sizes.
  @property
  def feature_config(self) -> features.FeatureConfig:
    """The log-mel front end of source='audio'."""
    return features.FeatureConfig(sample_rate=self.sample_rate, num_mels=self.num_mels)

  @property
  def encoder_input_size(self) -> int:
    return self.num_mels if self.source == "audio" else self.embed_size

  @property
  def encoder_size(self) -> int:
    """Encoder units per layer and direction."""
    return self.encoder_hidden_size or self.hidden_size

  @property
  def memory_size(self) -> int:
    """D: encoder output features, also the size of a merged encoder final state."""
    return rnn.stack_output_size(self.encoder_size, self.bidirectional, self.bidirectional_merge)

  @property
  def readout_size(self) -> int:
    """R: size of the attentional/readout vector fed to the output projection."""
    return self.embed_size if self.tie_embeddings else self.hidden_size

  @property
  def decoder_input_size(self) -> int:
    extra = {"none": self.memory_size, "bahdanau": self.memory_size,
             "location": self.memory_size,
             "luong": self.readout_size if self.input_feeding else 0}[self.attention]
    return self.embed_size + extra

  @property
  def can_copy_states(self) -> bool:
    return self.encoder_layers == self.decoder_layers and self.memory_size == self.hidden_size

  @property
  def resolved_bridge(self) -> str:
    if self.bridge == "auto":
      return "copy" if self.can_copy_states else "project"
    return self.bridge

  @property
  def additive_attention(self) -> bool:
    """Bahdanau's score (with location features for 'location'): keys h W_k, query W_q s."""
    return self.attention in ("bahdanau", "location")

  @property
  def recurrent_attention(self) -> bool:
    """Whether each decoder step's input depends on attention (so decoding must scan steps)."""
    return self.additive_attention or (self.attention == "luong" and self.input_feeding)

  @property
  def compute_dtype(self) -> Any:
    return jnp.dtype(self.dtype)


def _check_int(name: str, value: Any, minimum: int, note: str = "") -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    extra = f" ({note})" if note else ""
    raise ValueError(f"ModelConfig.{name}={value!r} is invalid; allowed values: an int >= "
                     f"{minimum}{extra}")


# ----------------------------------------------------------------------------- pytrees


class DecoderCarry(NamedTuple):
  """Decoder state between steps."""

  rnn: tuple[rnn.Carry, ...]  # one float32 carry per decoder layer
  feed_BR: jax.Array  # previous readout r_{t-1} (Luong input feeding); [B, 0] otherwise
  align_BS: jax.Array  # previous attention weights (attention='location'; zeros at first); [B, 0]


class Encoded(NamedTuple):
  """Everything the decoder reads from the source."""

  memory_BSD: jax.Array  # encoder top-layer outputs; zeros at padding
  keys_BSA: jax.Array  # attention keys computed once per source (memory itself for 'none'/'dot')
  mask_BS: jax.Array  # True at real source tokens
  context_BD: jax.Array  # h_S: the encoder top layer's merged final state
  initial_carry: DecoderCarry  # the bridge's output: the decoder's state before the first step


# ----------------------------------------------------------------------------- init


def _dense_init(rng: jax.Array, in_size: int, out_size: int, param_dtype: Any) -> dict:
  return {"W": nn.initializers.lecun_normal()(rng, (in_size, out_size), param_dtype),
          "b": jnp.zeros((out_size,), param_dtype)}


def _init_bridge(rng: jax.Array, cfg: ModelConfig, param_dtype: Any) -> dict:
  num_states = 2 if cfg.cell == "lstm" else 1
  in_size = cfg.encoder_layers * cfg.memory_size
  out_size = cfg.decoder_layers * cfg.hidden_size
  return {f"state_{k}": _dense_init(key, in_size, out_size, param_dtype)
          for k, key in enumerate(jax.random.split(rng, num_states))}


def _init_attention(rng: jax.Array, cfg: ModelConfig, param_dtype: Any) -> dict:
  if cfg.additive_attention:
    size = cfg.attention_size or cfg.hidden_size
    k_q, k_k, k_v, k_f, k_u = jax.random.split(rng, 5)
    params = {"query": _dense_init(k_q, cfg.hidden_size, size, param_dtype),
              "W_k": nn.initializers.lecun_normal()(k_k, (cfg.memory_size, size), param_dtype),
              "v": nn.initializers.normal(size ** -0.5)(k_v, (size,), param_dtype)}
    if cfg.attention == "location":
      R, K = cfg.location_width, cfg.location_filters
      params["F"] = nn.initializers.normal(R ** -0.5)(k_f, (R, K), param_dtype)
      params["U"] = nn.initializers.lecun_normal()(k_u, (K, size), param_dtype)
    return params
  # Luong 'general'; 'dot' has no parameters.
  return {"W_a": nn.initializers.lecun_normal()(rng, (cfg.memory_size, cfg.hidden_size),
                                                param_dtype)}


# ----------------------------------------------------------------------------- model math


def _embed(table_VE: jax.Array, ids: jax.Array, dtype: Any) -> jax.Array:
  return jnp.take(table_VE, ids, axis=0).astype(dtype)


def _tgt_embedding(p: Mapping[str, Any], cfg: ModelConfig) -> jax.Array:
  return p["src_embedding"] if cfg.share_embeddings else p["tgt_embedding"]


def _split_rng(rng: jax.Array | None, n: int) -> list[jax.Array | None]:
  return [None] * n if rng is None else list(jax.random.split(rng, n))


def _bridge(p: Mapping[str, Any], cfg: ModelConfig, finals: list[rnn.Carry]) -> DecoderCarry:
  """Decoder initial state from the encoder's merged final states (one carry per layer)."""
  B = finals[0][-1].shape[0]
  mode = cfg.resolved_bridge
  if mode == "zero":
    states = tuple(rnn.zero_carry(cfg.cell, B, cfg.hidden_size)
                   for _ in range(cfg.decoder_layers))
  elif mode == "copy":
    states = tuple(finals)
  else:
    per_component = []
    for k in range(len(finals[0])):
      dense = p["bridge"][f"state_{k}"]
      src_BX = jnp.concatenate([f[k] for f in finals], axis=-1)
      out_BY = jnp.tanh(rnn.matmul(src_BX, dense["W"], cfg.compute_dtype)
                        + dense["b"].astype(jnp.float32))
      per_component.append(jnp.split(out_BY, cfg.decoder_layers, axis=-1))
    states = tuple(tuple(comp[layer] for comp in per_component)
                   for layer in range(cfg.decoder_layers))
  feed_size = cfg.readout_size if cfg.input_feeding else 0
  return DecoderCarry(rnn=states, feed_BR=jnp.zeros((B, feed_size), cfg.compute_dtype),
                      align_BS=jnp.zeros((B, 0), jnp.float32))


def batch_source(batch: Mapping[str, Any]) -> Any:
  """A batch's source as the model reads it: token ids `src`, or `(audio, audio_len)`."""
  return (batch["audio"], batch["audio_len"]) if "audio" in batch else batch["src"]


def source_positions(batch: Mapping[str, Any], cfg: ModelConfig) -> int:
  """Real source positions of a (host) batch: tokens with EOS, or feature frames for audio."""
  if "audio" in batch:
    return int(np.sum(features.num_frames(batch["audio_len"], cfg.feature_config)))
  return int(np.sum(np.asarray(batch["src"]) != PAD_ID))


def _encoder_inputs(p: Mapping[str, Any], cfg: ModelConfig, src: Any, rng: jax.Array | None
                    ) -> tuple[jax.Array, jax.Array]:
  """(encoder inputs [B, S, X], lengths [B]): embedded ids, or the waveforms' log-mel
  features (SpecAugment-masked while training, with `spec_augment`)."""
  if cfg.source == "audio":
    audio_BN, num_samples_B = src
    feats_BSF, frames_B = features.log_mel(audio_BN, num_samples_B, cfg.feature_config)
    if rng is not None and cfg.spec_augment:
      feats_BSF = features.spec_augment(feats_BSF, frames_B, rng)
    return feats_BSF.astype(cfg.compute_dtype), frames_B
  emb_BSE = rnn.dropout(rng, _embed(p["src_embedding"], src, cfg.compute_dtype), cfg.dropout)
  return emb_BSE, jnp.sum(src != PAD_ID, axis=1)


def encode(
    p: Mapping[str, Any], cfg: ModelConfig, src: Any, rng: jax.Array | None = None
) -> Encoded:
  """Runs the encoder and the bridge on `src`: int32 ids [B, S] with trailing PAD_ID, or for
  source='audio' `(int16 waveforms [B, N], samples [B])`. `rng` enables dropout (None:
  evaluation)."""
  dtype = cfg.compute_dtype
  rng_emb, rng_rnn = _split_rng(rng, 2)
  x_BSX, lengths_B = _encoder_inputs(p, cfg, src, rng_emb)
  memory_BSD, finals = rnn.rnn_stack(
      cfg.cell, p["encoder"], x_BSX, lengths_B, bidirectional=cfg.bidirectional,
      merge=cfg.bidirectional_merge, residual=cfg.residual, dropout_rate=cfg.dropout,
      rng=rng_rnn, dtype=dtype, unroll=cfg.scan_unroll, reduce_factor=cfg.encoder_reduce)
  top_B = rnn.reduced_lengths(lengths_B, cfg.encoder_reduce, cfg.encoder_layers - 1)
  mask_BS = jnp.arange(memory_BSD.shape[1])[None, :] < top_B[:, None]
  if cfg.bidirectional:
    merge = cfg.bidirectional_merge
    finals = [tuple(rnn.merge_directions(f, b, merge) for f, b in zip(fw, bw, strict=True))
              for fw, bw in finals]
  if cfg.additive_attention:
    keys = rnn.matmul(memory_BSD, p["attention"]["W_k"], dtype).astype(dtype)
  elif cfg.attention == "luong" and cfg.attention_score == "general":
    keys = rnn.matmul(memory_BSD, p["attention"]["W_a"], dtype).astype(dtype)
  else:
    keys = memory_BSD
  initial_carry = _bridge(p, cfg, finals)
  if cfg.attention == "location":
    initial_carry = initial_carry._replace(align_BS=jnp.zeros(mask_BS.shape, jnp.float32))
  return Encoded(memory_BSD=memory_BSD, keys_BSA=keys, mask_BS=mask_BS,
                 context_BD=finals[-1][-1], initial_carry=initial_carry)


def _readout(p: Mapping[str, Any], cfg: ModelConfig, h: jax.Array, ctx: jax.Array) -> jax.Array:
  """r = tanh(W_r [h; ctx] + b_r): [..., H], [..., D] -> [..., R]."""
  dtype = cfg.compute_dtype
  x = jnp.concatenate([h.astype(dtype), ctx.astype(dtype)], axis=-1)
  return jnp.tanh(rnn.matmul(x, p["readout"]["W"], dtype)
                  + p["readout"]["b"].astype(jnp.float32)).astype(dtype)


def _logits(p: Mapping[str, Any], cfg: ModelConfig, r: jax.Array) -> jax.Array:
  """Output projection [..., R] -> float32 logits [..., V]."""
  if cfg.tie_embeddings:
    W_RV = _tgt_embedding(p, cfg).T
  else:
    W_RV = p["output"]["W"]
  return rnn.matmul(r, W_RV, cfg.compute_dtype) + p["output"]["b"].astype(jnp.float32)


def _luong(cfg: ModelConfig, enc: Encoded, h_BTH: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Luong weights [B, T, S] and context [B, T, D] for T query states at once."""
  w_BTS = attn.masked_softmax(attn.luong_scores(h_BTH.astype(cfg.compute_dtype), enc.keys_BSA),
                              enc.mask_BS[:, None, :])
  return w_BTS, attn.attend(w_BTS, enc.memory_BSD)


def _additive_weights(p: Mapping[str, Any], cfg: ModelConfig, enc: Encoded,
                      carry: DecoderCarry) -> jax.Array:
  """Bahdanau (or location-aware) weights [B, S] from the previous top decoder state."""
  query_BA = (rnn.matmul(carry.rnn[-1][-1], p["query"]["W"], cfg.compute_dtype)
              + p["query"]["b"].astype(jnp.float32))
  keys_BSA, v_A = enc.keys_BSA.astype(jnp.float32), p["v"].astype(jnp.float32)
  if cfg.attention == "location":
    location_BSK = attn.location_features(carry.align_BS, p["F"])
    scores_BS = attn.location_scores(query_BA, keys_BSA, location_BSK, p["U"], v_A)
  else:
    scores_BS = attn.bahdanau_scores(query_BA, keys_BSA, v_A)
  return attn.masked_softmax(scores_BS, enc.mask_BS)


def _decoder_step(
    p: Mapping[str, Any],
    cfg: ModelConfig,
    enc: Encoded,
    carry: DecoderCarry,
    emb_BE: jax.Array,
    rng: jax.Array | None = None,
) -> tuple[DecoderCarry, jax.Array, jax.Array | None]:
  """The decoder's one step function: `(carry, r_BR, weights_BS or None)`."""
  dtype = cfg.compute_dtype
  weights_BS = None
  if cfg.attention == "none":
    extra = [enc.context_BD.astype(dtype)]
  elif cfg.additive_attention:
    weights_BS = _additive_weights(p["attention"], cfg, enc, carry)
    ctx_BD = attn.attend(weights_BS, enc.memory_BSD)
    extra = [ctx_BD.astype(dtype)]
  else:
    extra = [carry.feed_BR.astype(dtype)] if cfg.input_feeding else []
  x_BX = jnp.concatenate([emb_BE, *extra], axis=-1)
  states, h_BH = rnn.stack_step(cfg.cell, p["decoder"], carry.rnn, x_BX, residual=cfg.residual,
                                dropout_rate=cfg.dropout, rng=rng, dtype=dtype)
  if cfg.attention == "none":
    ctx_BD = enc.context_BD
  elif cfg.attention == "luong":
    w_B1S, ctx_B1D = _luong(cfg, enc, h_BH[:, None, :])
    weights_BS, ctx_BD = w_B1S[:, 0], ctx_B1D[:, 0]
  r_BR = _readout(p, cfg, h_BH, ctx_BD)
  feed_BR = r_BR if cfg.input_feeding else carry.feed_BR
  align_BS = weights_BS if cfg.attention == "location" else carry.align_BS
  return DecoderCarry(rnn=states, feed_BR=feed_BR, align_BS=align_BS), r_BR, weights_BS


def decode(
    p: Mapping[str, Any],
    cfg: ModelConfig,
    enc: Encoded,
    tgt_in_BT: jax.Array,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
  """Teacher-forced decoding: `(logits_BTV float32, weights_BTS or None for attention='none')`.

  `tgt_in_BT` starts with BOS; padding after a target's end produces logits the loss masks out.
  """
  dtype = cfg.compute_dtype
  B, T = tgt_in_BT.shape
  rng_emb, rng_rnn, rng_out = _split_rng(rng, 3)
  emb_BTE = rnn.dropout(rng_emb, _embed(_tgt_embedding(p, cfg), tgt_in_BT, dtype), cfg.dropout)
  if cfg.recurrent_attention:
    def body(carry, inputs):
      t, emb_BE = inputs
      step_rng = None if rng_rnn is None else jax.random.fold_in(rng_rnn, t)
      carry, r_BR, w_BS = _decoder_step(p, cfg, enc, carry, emb_BE, step_rng)
      return carry, (r_BR, w_BS)

    _, (r_TBR, w_TBS) = jax.lax.scan(body, enc.initial_carry,
                                     (jnp.arange(T), emb_BTE.swapaxes(0, 1)),
                                     unroll=cfg.scan_unroll)
    r_BTR, w_BTS = r_TBR.swapaxes(0, 1), w_TBS.swapaxes(0, 1)
  else:
    # The recurrence does not read attention: run the cells with hoisted input projections,
    # then attend for all steps in one batched product.
    if cfg.attention == "none":
      ctx_BTD = jnp.broadcast_to(enc.context_BD[:, None, :], (B, T, enc.context_BD.shape[-1]))
      x_BTX = jnp.concatenate([emb_BTE, ctx_BTD.astype(dtype)], axis=-1)
    else:
      x_BTX = emb_BTE
    h_BTH, _ = rnn.rnn_stack(cfg.cell, p["decoder"], x_BTX, None, enc.initial_carry.rnn,
                             residual=cfg.residual, dropout_rate=cfg.dropout, rng=rng_rnn,
                             dtype=dtype, unroll=cfg.scan_unroll)
    if cfg.attention == "none":
      w_BTS = None
    else:
      w_BTS, ctx_BTD = _luong(cfg, enc, h_BTH)
    r_BTR = _readout(p, cfg, h_BTH, ctx_BTD)
  return _logits(p, cfg, rnn.dropout(rng_out, r_BTR, cfg.dropout)), w_BTS


def decode_step(
    p: Mapping[str, Any], cfg: ModelConfig, enc: Encoded, carry: DecoderCarry, token_B: jax.Array
) -> tuple[jax.Array, DecoderCarry, jax.Array | None]:
  """One inference step: `(logits_BV float32, new carry, weights_BS or None)`."""
  emb_BE = _embed(_tgt_embedding(p, cfg), token_B, cfg.compute_dtype)
  carry, r_BR, w_BS = _decoder_step(p, cfg, enc, carry, emb_BE)
  return _logits(p, cfg, r_BR), carry, w_BS


# ----------------------------------------------------------------------------- module


class Seq2Seq(nn.Module):
  """Flax module owning the parameters; every method calls the pure functions above.

  Dropout is active when `deterministic=False`, using the 'dropout' rng stream passed to `apply`.
  """

  config: ModelConfig

  def setup(self) -> None:
    cfg = self.config
    pd = jnp.dtype(cfg.param_dtype)
    embed_init = nn.initializers.normal(stddev=cfg.embed_size ** -0.5)
    if cfg.source == "tokens":
      self.src_embedding = self.param("src_embedding", embed_init,
                                      (cfg.src_vocab_size, cfg.embed_size), pd)
    if not cfg.share_embeddings:
      self.tgt_embedding = self.param("tgt_embedding", embed_init,
                                      (cfg.tgt_vocab_size, cfg.embed_size), pd)
    self.encoder = self.param("encoder", lambda k: rnn.init_stack_params(
        k, cfg.cell, cfg.encoder_input_size, cfg.encoder_size, cfg.encoder_layers,
        bidirectional=cfg.bidirectional, merge=cfg.bidirectional_merge,
        forget_bias=cfg.forget_bias, param_dtype=pd, reduce_factor=cfg.encoder_reduce))
    if cfg.resolved_bridge == "project":
      self.bridge = self.param("bridge", _init_bridge, cfg, pd)
    self.decoder = self.param("decoder", lambda k: rnn.init_stack_params(
        k, cfg.cell, cfg.decoder_input_size, cfg.hidden_size, cfg.decoder_layers,
        forget_bias=cfg.forget_bias, param_dtype=pd))
    if cfg.additive_attention or (cfg.attention == "luong"
                                  and cfg.attention_score == "general"):
      self.attention = self.param("attention", _init_attention, cfg, pd)
    self.readout = self.param("readout", _dense_init, cfg.hidden_size + cfg.memory_size,
                              cfg.readout_size, pd)
    if cfg.tie_embeddings:
      self.output = self.param("output", lambda k: {"b": jnp.zeros((cfg.tgt_vocab_size,), pd)})
    else:
      self.output = self.param("output", _dense_init, cfg.readout_size, cfg.tgt_vocab_size, pd)

  def create_params(self) -> None:
    """Creates every parameter without running the model:
    `model.init(rng, method=Seq2Seq.create_params)["params"]` equals `model.init(rng, src,
    tgt_in)["params"]` (each parameter's rng derives from its name), without the forward pass
    that an un-jitted init runs op by op (seconds of compilation on CPU)."""
    self.encoder  # noqa: B018  (the first attribute access runs setup(), which creates them all)

  def _rng(self, deterministic: bool) -> jax.Array | None:
    if deterministic or self.config.dropout == 0.0:
      return None
    return self.make_rng("dropout")

  def __call__(self, src_BS: jax.Array, tgt_in_BT: jax.Array, *,
               deterministic: bool = True) -> jax.Array:
    """Teacher-forced logits [B, T, V] for a batch of (source, target input) pairs."""
    enc = self.encode(src_BS, deterministic=deterministic)
    return self.decode(enc, tgt_in_BT, deterministic=deterministic)

  def encode(self, src_BS: Any, *, deterministic: bool = True) -> Encoded:
    """Encodes int32 source ids [B, S] (trailing PAD_ID padding), or `(audio, samples)`."""
    return encode(self.variables["params"], self.config, src_BS, self._rng(deterministic))

  def decode(self, enc: Encoded, tgt_in_BT: jax.Array, *, deterministic: bool = True,
             return_attention: bool = False) -> Any:
    """Teacher-forced logits [B, T, V]; with `return_attention`, `(logits, weights_BTS)`."""
    logits, weights = decode(self.variables["params"], self.config, enc, tgt_in_BT,
                             self._rng(deterministic))
    return (logits, weights) if return_attention else logits

  def decode_step(self, enc: Encoded, carry: DecoderCarry, token_B: jax.Array, *,
                  return_attention: bool = False) -> Any:
    """One step from `carry` (start with `enc.initial_carry` and BOS_ID): `(logits_BV, carry)`,
    plus the attention weights [B, S] with `return_attention`."""
    logits, carry, weights = decode_step(self.variables["params"], self.config, enc, carry,
                                         token_B)
    return (logits, carry, weights) if return_attention else (logits, carry)
