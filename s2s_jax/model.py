"""Encoder-decoder RNNs: the model math as pure functions, and the thin `Seq2Seq` module
(`ModelConfig`, its frozen hyperparameters, is `s2s_jax.model_config`).

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
  decoder   one step function, `_decoder_step`, over the attention type's entry
            (`s2s_jax.attention.TYPES`; which state asks is its `query`):
              x_t   = [emb(y_{t-1}); ctx; r_{t-1}]  ctx: h_S (the encoder's top final state, the
                      fixed context of Cho 2014) for query 'none', or the context that the
                      previous top decoder state asks for ('previous': Bahdanau, location-aware);
                      none for 'current' (Luong). r_{t-1}: the previous readout, with Luong input
                      feeding only.
              h_t   = the stacked cells' new top state
              ctx_t = h_S, the 'previous' context, or the context h_t asks for ('current')
              r_t   = tanh(W_r [h_t; ctx_t] + b_r)     (R = E when embeddings are tied, else H)
            logits_t = dropout(r_t) W_V + b_V        (W_V = target embedding^T when tied)
            copy_attention: log of g softmax(logits_t) + (1 - g) attention mass per source token
            coverage: each score gains a learned function of the attention its position had
            at the steps before (`s2s_jax.coverage`)
  ctc       optional (ctc_weight > 0): logits_f = W_c dropout(memory_s) + b_c, ctc_upsample frames
            f per memory step s (`ctc_logits`; the loss and decoding are `s2s_jax.ctc`'s).
  Two drivers run that step: `decode_step` (one step, for search) and the teacher-forced `decode`.
  When the recurrence does not read attention (`ModelConfig.recurrent_attention` false) `decode`
  runs the cells layer by layer with hoisted input projections, then attends for all T steps
  at once; otherwise it scans `_decoder_step` over time.

Token ids 0 pad, 1 bos, 2 eos, 3 unk are fixed (`special_ids`). Source padding must be trailing:
the source mask is `src != PAD_ID`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax import attention as attn
from s2s_jax import bridge, coverage, features, pointer, rnn
from s2s_jax.model_config import ModelConfig
from s2s_jax.special_ids import PAD_ID, UNK_ID

__all__ = ["DecoderCarry", "Encoded", "ModelConfig", "Seq2Seq", "batch_source", "ctc_logits",
           "decode", "decode_step", "encode", "source_positions"]


# ----------------------------------------------------------------------------- pytrees


class DecoderCarry(NamedTuple):
  """Decoder state between steps."""

  rnn: tuple[rnn.Carry, ...]  # one float32 carry per decoder layer
  feed_BR: jax.Array  # previous readout r_{t-1} (Luong input feeding); [B, 0] otherwise
  align_BS: jax.Array  # previous attention weights (attention='location'; zeros at first); [B, 0]
  coverage_BS: jax.Array  # attention summed over the steps so far (coverage); [B, 0] without


class Encoded(NamedTuple):
  """Everything the decoder reads from the source."""

  memory_BSD: jax.Array  # encoder top-layer outputs; zeros at padding
  keys_BSA: jax.Array  # attention keys computed once per source (memory itself for 'none'/'dot')
  mask_BS: jax.Array  # True at real source tokens
  context_BD: jax.Array  # h_S: the encoder top layer's merged final state
  initial_carry: DecoderCarry  # the bridge's output: the decoder's state before the first step
  source_ids_BS: jax.Array  # the source ids, for copy attention; [B, 0] without it


# ----------------------------------------------------------------------------- model math


def _embed(table_VE: jax.Array, ids: jax.Array, dtype: Any) -> jax.Array:
  """Rows of the table; an extended-vocabulary id (>= V, copy_oov_slots) reads <unk>'s."""
  ids = jnp.where(ids < table_VE.shape[0], ids, UNK_ID)
  return jnp.take(table_VE, ids, axis=0).astype(dtype)


def _tgt_embedding(p: Mapping[str, Any], cfg: ModelConfig) -> jax.Array:
  return p["src_embedding"] if cfg.share_embeddings else p["tgt_embedding"]


def _split_rng(rng: jax.Array | None, n: int) -> list[jax.Array | None]:
  return [None] * n if rng is None else list(jax.random.split(rng, n))


def _bridge(p: Mapping[str, Any], cfg: ModelConfig, finals: list[rnn.Carry]) -> DecoderCarry:
  """Decoder initial state from the encoder's merged final states (`s2s_jax.bridge`)."""
  B = finals[0][-1].shape[0]
  feed_size = cfg.readout_size if cfg.input_feeding else 0
  return DecoderCarry(rnn=bridge.initial_states(p, cfg, finals),
                      feed_BR=jnp.zeros((B, feed_size), cfg.compute_dtype),
                      align_BS=jnp.zeros((B, 0), jnp.float32),
                      coverage_BS=jnp.zeros((B, 0), jnp.float32))


def batch_source(batch: Mapping[str, Any]) -> Any:
  """A batch's source as the model reads it: token ids `src`, or `(audio, audio_len)`."""
  return (batch["audio"], batch["audio_len"]) if "audio" in batch else batch["src"]


def source_positions(batch: Mapping[str, Any], cfg: ModelConfig) -> int:
  """Real source positions of a (host) batch: tokens with EOS, or feature frames for audio."""
  if "audio" in batch:
    return int(np.sum(cfg.source_steps(batch["audio_len"])))
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
  kind = cfg.attention_type
  keys = kind.keys(p.get("attention"), memory_BSD, dtype)
  initial_carry = _bridge(p, cfg, finals)
  if kind.carries_weights:  # "the previous step's weights" before the first step
    initial_carry = initial_carry._replace(align_BS=jnp.zeros(mask_BS.shape, jnp.float32))
  if cfg.coverage:
    initial_carry = initial_carry._replace(coverage_BS=jnp.zeros(mask_BS.shape, jnp.float32))
  ids_BS = src if cfg.copy_attention else jnp.zeros((mask_BS.shape[0], 0), jnp.int32)
  return Encoded(memory_BSD=memory_BSD, keys_BSA=keys, mask_BS=mask_BS,
                 context_BD=finals[-1][-1], initial_carry=initial_carry, source_ids_BS=ids_BS)


def _readout(p: Mapping[str, Any], cfg: ModelConfig, h: jax.Array, ctx: jax.Array) -> jax.Array:
  """r = tanh(W_r [h; ctx] + b_r): [..., H], [..., D] -> [..., R]."""
  dtype = cfg.compute_dtype
  x = jnp.concatenate([h.astype(dtype), ctx.astype(dtype)], axis=-1)
  return jnp.tanh(rnn.matmul(x, p["readout"]["W"], dtype)
                  + p["readout"]["b"].astype(jnp.float32)).astype(dtype)


def _logits(p: Mapping[str, Any], cfg: ModelConfig, r: jax.Array, enc: Encoded,
            weights: jax.Array | None) -> jax.Array:
  """Output projection [..., R] -> float32 logits [..., V]; with copy attention, the
  log-probabilities of the pointer-generator mixture (`s2s_jax.pointer`) in their place,
  over V + copy_oov_slots ids."""
  W_RV = _tgt_embedding(p, cfg).T if cfg.tie_embeddings else p["output"]["W"]
  logits = rnn.matmul(r, W_RV, cfg.compute_dtype) + p["output"]["b"].astype(jnp.float32)
  if not cfg.copy_attention:
    return logits
  return pointer.mix(logits, weights, enc.source_ids_BS, pointer.gate(p["copy"], r),
                     cfg.output_size)


def _attend(p: Mapping[str, Any], cfg: ModelConfig, enc: Encoded, query: jax.Array,
            carry: DecoderCarry | None) -> tuple[jax.Array, jax.Array]:
  """The model's attention type asked by `query` [B, (T,) H]: (weights, context). A step
  reads the carry's previous weights and coverage; T steps at once (teacher-forced Luong) have
  no carry, and with coverage only their softmax runs step by step."""
  scores = cfg.attention_type.scores(p.get("attention"), query, enc.keys_BSA,
                                     None if carry is None else carry.align_BS, cfg.compute_dtype)
  if cfg.coverage and carry is None:
    weights = coverage.weights_over_steps(p["coverage"], scores, enc.mask_BS)
  else:
    if cfg.coverage:
      term_BS = coverage.score_term(p["coverage"], carry.coverage_BS)
      scores = scores + (term_BS if scores.ndim == 2 else term_BS[:, None, :])
    weights = attn.masked_softmax(scores, enc.mask_BS if scores.ndim == 2
                                  else enc.mask_BS[:, None, :])
  return weights, attn.attend(weights, enc.memory_BSD)


def _decoder_step(
    p: Mapping[str, Any],
    cfg: ModelConfig,
    enc: Encoded,
    carry: DecoderCarry,
    emb_BE: jax.Array,
    rng: jax.Array | None = None,
) -> tuple[DecoderCarry, jax.Array, jax.Array | None]:
  """The decoder's one step function: `(carry, r_BR, weights_BS or None)`."""
  kind, dtype = cfg.attention_type, cfg.compute_dtype
  weights_BS, ctx_BD = None, enc.context_BD  # query 'none': h_S at every step
  if kind.query == attn.PREVIOUS:  # Bahdanau: the previous top state asks, before the cell
    weights_BS, ctx_BD = _attend(p, cfg, enc, carry.rnn[-1][-1], carry)
  fed = [] if kind.query == attn.CURRENT else [ctx_BD.astype(dtype)]
  if cfg.input_feeding:
    fed.append(carry.feed_BR.astype(dtype))
  x_BX = jnp.concatenate([emb_BE, *fed], axis=-1)
  states, h_BH = rnn.stack_step(cfg.cell, p["decoder"], carry.rnn, x_BX, residual=cfg.residual,
                                dropout_rate=cfg.dropout, rng=rng, dtype=dtype)
  if kind.query == attn.CURRENT:  # Luong: the new top state asks, after the cell
    w_B1S, ctx_B1D = _attend(p, cfg, enc, h_BH[:, None, :], carry)
    weights_BS, ctx_BD = w_B1S[:, 0], ctx_B1D[:, 0]
  r_BR = _readout(p, cfg, h_BH, ctx_BD)
  feed_BR = r_BR if cfg.input_feeding else carry.feed_BR
  align_BS = weights_BS if kind.carries_weights else carry.align_BS
  coverage_BS = carry.coverage_BS + weights_BS if cfg.coverage else carry.coverage_BS
  return DecoderCarry(states, feed_BR, align_BS, coverage_BS), r_BR, weights_BS


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
    current = cfg.attention_type.query == attn.CURRENT
    if current:
      x_BTX = emb_BTE
    else:  # query 'none': h_S enters every step
      ctx_BTD = jnp.broadcast_to(enc.context_BD[:, None, :], (B, T, enc.context_BD.shape[-1]))
      x_BTX = jnp.concatenate([emb_BTE, ctx_BTD.astype(dtype)], axis=-1)
    h_BTH, _ = rnn.rnn_stack(cfg.cell, p["decoder"], x_BTX, None, enc.initial_carry.rnn,
                             residual=cfg.residual, dropout_rate=cfg.dropout, rng=rng_rnn,
                             dtype=dtype, unroll=cfg.scan_unroll)
    w_BTS = None
    if current:
      w_BTS, ctx_BTD = _attend(p, cfg, enc, h_BTH, None)
    r_BTR = _readout(p, cfg, h_BTH, ctx_BTD)
  return _logits(p, cfg, rnn.dropout(rng_out, r_BTR, cfg.dropout), enc, w_BTS), w_BTS


def ctc_logits(p: Mapping[str, Any], cfg: ModelConfig, enc: Encoded,
               rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """The CTC head on the encoder's outputs: (float32 logits [B, F, V], frame mask [B, F]),
  F = S * ctc_upsample (each memory step projected to `ctc_upsample` frames)."""
  B, S, _ = enc.memory_BSD.shape
  x_BSD = rnn.dropout(rng, enc.memory_BSD, cfg.dropout)
  logits_BSX = (rnn.matmul(x_BSD, p["ctc"]["W"], cfg.compute_dtype)
                + p["ctc"]["b"].astype(jnp.float32))
  U = cfg.ctc_upsample
  return logits_BSX.reshape(B, S * U, -1), jnp.repeat(enc.mask_BS, U, axis=1)


def decode_step(
    p: Mapping[str, Any], cfg: ModelConfig, enc: Encoded, carry: DecoderCarry, token_B: jax.Array
) -> tuple[jax.Array, DecoderCarry, jax.Array | None]:
  """One inference step: `(logits_BV float32, new carry, weights_BS or None)`."""
  emb_BE = _embed(_tgt_embedding(p, cfg), token_B, cfg.compute_dtype)
  carry, r_BR, w_BS = _decoder_step(p, cfg, enc, carry, emb_BE)
  return _logits(p, cfg, r_BR, enc, w_BS), carry, w_BS


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
      self.bridge = self.param("bridge", bridge.init, cfg, pd)
    self.decoder = self.param("decoder", lambda k: rnn.init_stack_params(
        k, cfg.cell, cfg.decoder_input_size, cfg.hidden_size, cfg.decoder_layers,
        forget_bias=cfg.forget_bias, param_dtype=pd))
    if cfg.attention_type.init is not None:
      self.attention = self.param("attention", cfg.attention_type.init, cfg.attention_sizes, pd)
    if cfg.has_ctc:
      self.ctc = self.param("ctc", rnn.dense_init, cfg.memory_size,
                            cfg.ctc_upsample * cfg.tgt_vocab_size, pd)
    self.readout = self.param("readout", rnn.dense_init, cfg.hidden_size + cfg.memory_size,
                              cfg.readout_size, pd)
    if cfg.copy_attention:
      self.copy_gate = self.param("copy", pointer.init, cfg.readout_size, pd)
    if cfg.coverage:
      self.coverage = self.param("coverage", coverage.init, pd)
    if cfg.tie_embeddings:
      self.output = self.param("output", lambda k: {"b": jnp.zeros((cfg.tgt_vocab_size,), pd)})
    else:
      self.output = self.param("output", rnn.dense_init, cfg.readout_size, cfg.tgt_vocab_size, pd)

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

  def __call__(self, src_BS: jax.Array, tgt_in_BT: jax.Array, *, deterministic: bool = True,
               return_attention: bool = False) -> Any:
    """Teacher-forced logits [B, T, V] for a batch of (source, target input) pairs; with
    `return_attention`, `(logits, weights_BTS)`."""
    enc = self.encode(src_BS, deterministic=deterministic)
    return self.decode(enc, tgt_in_BT, deterministic=deterministic,
                       return_attention=return_attention)

  def with_ctc(self, src_BS: Any, tgt_in_BT: jax.Array, *, deterministic: bool = True
               ) -> tuple[jax.Array | None, tuple[jax.Array, jax.Array]]:
    """`(teacher-forced logits [B, T, V], (CTC logits [B, F, V], frame mask [B, F]))`; the
    logits are None for a CTC-only model (ctc_weight 1), whose decoder is not trained."""
    enc = self.encode(src_BS, deterministic=deterministic)
    ctc = ctc_logits(self.variables["params"], self.config, enc, self._rng(deterministic))
    if self.config.ctc_weight == 1.0:
      return None, ctc
    return self.decode(enc, tgt_in_BT, deterministic=deterministic), ctc

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
