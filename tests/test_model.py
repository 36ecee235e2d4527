"""Seq2Seq: one step function behind both drivers, padding invariance, the model variants."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import BOS_ID, PAD_ID, ModelConfig, Seq2Seq, cross_entropy, rnn
from s2s_jax import model as model_lib

RTOL, ATOL = 1e-5, 1e-5

VARIANTS = {
    "none-lstm-bidi-project": dict(attention="none", cell="lstm"),
    "none-gru-uni-copy": dict(attention="none", cell="gru", bidirectional=False,
                              encoder_layers=1, decoder_layers=1),
    "bahdanau-gru-bidi-sum-copy": dict(attention="bahdanau", cell="gru",
                                       bidirectional_merge="sum", attention_size=6),
    "luong-dot-lstm-uni": dict(attention="luong", attention_score="dot", bidirectional=False),
    "location-lstm-bidi": dict(attention="location", location_filters=3, location_width=5,
                               attention_size=6),
    "luong-general-feed-tied-residual": dict(attention="luong", input_feeding=True,
                                             tie_embeddings=True, residual=True,
                                             encoder_layers=3, decoder_layers=2),
    "luong-general-rnn-shared-zero": dict(attention="luong", cell="rnn", share_embeddings=True,
                                          bridge="zero", src_vocab_size=13),
}


def make(**overrides):
  kw = dict(src_vocab_size=11, tgt_vocab_size=13, embed_size=6, hidden_size=8,
            encoder_hidden_size=None, encoder_layers=2, decoder_layers=2)
  kw.update(overrides)
  model = Seq2Seq(ModelConfig(**kw))
  return model, _init(model)


@functools.partial(jax.jit, static_argnums=0)
def _init(model):
  # The parameters alone (no forward pass to compile): equal to an init with inputs (tested).
  return model.init(jax.random.key(0), method=Seq2Seq.create_params)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _forward(model, variables, src, tgt_in, deterministic=True, rng=None):
  rngs = None if rng is None else {"dropout": rng}
  return model.apply(variables, src, tgt_in, deterministic=deterministic, rngs=rngs)


def toy_batch():
  src = jnp.array([[4, 5, 6, 7, 8, 0, 0], [9, 4, 0, 0, 0, 0, 0], [5, 5, 6, 10, 4, 7, 9]])
  tgt_in = jnp.array([[BOS_ID, 4, 5, 6, 0], [BOS_ID, 7, 0, 0, 0], [BOS_ID, 8, 9, 10, 11]])
  return src, tgt_in


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, variables, src):
  return model.apply(variables, src, method=Seq2Seq.encode)


@functools.partial(jax.jit, static_argnums=0)
def _decode(model, variables, enc, tgt_in):
  return model.apply(variables, enc, tgt_in, return_attention=True, method=Seq2Seq.decode)


@functools.partial(jax.jit, static_argnums=0)
def _step(model, variables, enc, carry, token):
  return model.apply(variables, enc, carry, token, return_attention=True,
                     method=Seq2Seq.decode_step)


@pytest.mark.parametrize("variant", VARIANTS)
def test_teacher_forced_decode_equals_loop_of_decode_steps(variant):
  model, variables = make(**VARIANTS[variant])
  src, tgt_in = toy_batch()
  enc = _encode(model, variables, src)
  logits, weights = _decode(model, variables, enc, tgt_in)
  carry, step_logits, step_weights = enc.initial_carry, [], []
  for t in range(tgt_in.shape[1]):
    lg, carry, w = _step(model, variables, enc, carry, tgt_in[:, t])
    step_logits.append(lg)
    step_weights.append(w)
  assert logits.shape == (3, 5, 13) and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, jnp.stack(step_logits, 1), rtol=RTOL, atol=ATOL)
  if model.config.attention == "none":
    assert weights is None and step_weights[0] is None
  else:
    np.testing.assert_allclose(weights, jnp.stack(step_weights, 1), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if not v.startswith("none")])
def test_attention_weights_are_zero_on_padding_and_sum_to_one(variant):
  model, variables = make(**VARIANTS[variant])
  src, tgt_in = toy_batch()
  _, weights = _decode(model, variables, _encode(model, variables, src), tgt_in)
  mask = np.asarray(src != PAD_ID)
  assert weights.shape == (3, 5, 7)
  np.testing.assert_array_equal(np.asarray(weights)[~np.broadcast_to(mask[:, None], weights.shape)],
                                0.0)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sentence_alone_and_padded_in_a_batch_give_the_same_states_logits_and_loss(variant):
  model, variables = make(**VARIANTS[variant])
  src, tgt_in = toy_batch()
  tgt_out = jnp.array([[4, 5, 6, 2, 0], [7, 2, 0, 0, 0], [8, 9, 10, 11, 2]])
  # Sentence 0 alone, without any padding.
  src_1, tgt_in_1, tgt_out_1 = src[:1, :5], tgt_in[:1, :4], tgt_out[:1, :4]
  enc_b, enc_1 = _encode(model, variables, src), _encode(model, variables, src_1)
  np.testing.assert_allclose(enc_b.memory_BSD[0, :5], enc_1.memory_BSD[0], rtol=RTOL, atol=ATOL)
  np.testing.assert_array_equal(enc_b.memory_BSD[0, 5:], 0.0)
  np.testing.assert_allclose(enc_b.context_BD[0], enc_1.context_BD[0], rtol=RTOL, atol=ATOL)
  for got, want in zip(jax.tree.leaves(enc_b.initial_carry), jax.tree.leaves(enc_1.initial_carry),
                       strict=True):
    if got.shape != want.shape:  # the previous alignment (location attention) spans the source
      np.testing.assert_array_equal(got[0, want.shape[1]:], 0.0)
      got = got[:, :want.shape[1]]
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL, atol=ATOL)
  logits_b, _ = _decode(model, variables, enc_b, tgt_in)
  logits_1, _ = _decode(model, variables, enc_1, tgt_in_1)
  np.testing.assert_allclose(logits_b[0, :4], logits_1[0], rtol=RTOL, atol=ATOL)
  loss_b, n_b = cross_entropy(logits_b[:1], tgt_out[:1])
  loss_1, n_1 = cross_entropy(logits_1, tgt_out_1)
  assert n_b == n_1 == 4
  np.testing.assert_allclose(loss_b, loss_1, rtol=RTOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_for_a_sentence_does_not_depend_on_its_batch_mates(variant):
  model, variables = make(**VARIANTS[variant])
  src, tgt_in = toy_batch()
  full, _ = _decode(model, variables, _encode(model, variables, src), tgt_in)
  swapped_src = src.at[0].set(src[2]).at[2].set(src[0])
  swapped_tgt = tgt_in.at[0].set(tgt_in[2]).at[2].set(tgt_in[0])
  other, _ = _decode(model, variables, _encode(model, variables, swapped_src), swapped_tgt)
  np.testing.assert_allclose(full[0], other[2], rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(full[1], other[1], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("variant", ["none-lstm-bidi-project", "none-gru-uni-copy"])
def test_no_attention_decoder_reads_the_source_only_through_its_final_state(variant):
  model, variables = make(**VARIANTS[variant])
  src, tgt_in = toy_batch()
  enc_a = _encode(model, variables, src)
  enc_b = _encode(model, variables, src[::-1])  # different sentences, different memories
  # Give B the final state (fixed context and bridge output) of A: the logits become A's, whatever
  # B's memory, keys and mask hold.
  hybrid = enc_b._replace(context_BD=enc_a.context_BD, initial_carry=enc_a.initial_carry)
  logits_a, _ = _decode(model, variables, enc_a, tgt_in)
  logits_h, _ = _decode(model, variables, hybrid, tgt_in)
  np.testing.assert_allclose(logits_h, logits_a, rtol=RTOL, atol=ATOL)
  # The same holds for the one-step driver used by search.
  step_a, _, _ = _step(model, variables, enc_a, enc_a.initial_carry, tgt_in[:, 0])
  step_h, _, _ = _step(model, variables, hybrid, hybrid.initial_carry, tgt_in[:, 0])
  np.testing.assert_allclose(step_h, step_a, rtol=RTOL, atol=ATOL)
  # And the final state does matter: the context alone changes the output.
  only_ctx = enc_a._replace(context_BD=enc_b.context_BD)
  assert not np.allclose(_decode(model, variables, only_ctx, tgt_in)[0], logits_a, atol=1e-3)


@pytest.mark.parametrize("variant", ["location-lstm-bidi", "luong-general-feed-tied-residual"])
def test_creating_the_parameters_alone_gives_those_of_an_init_with_inputs(variant):
  model, created = make(**VARIANTS[variant])  # make() creates the parameters alone
  variables = jax.jit(model.init)(jax.random.key(0), *toy_batch())  # runs the model once
  assert jax.tree.structure(created) == jax.tree.structure(variables)
  for a, b in zip(jax.tree.leaves(created), jax.tree.leaves(variables), strict=True):
    np.testing.assert_array_equal(a, b)


def test_attention_decoder_does_read_the_memory():
  model, variables = make(attention="luong")
  src, tgt_in = toy_batch()
  enc = _encode(model, variables, src)
  noisy = enc._replace(memory_BSD=enc.memory_BSD + 1.0)
  assert not np.allclose(_decode(model, variables, noisy, tgt_in)[0],
                         _decode(model, variables, enc, tgt_in)[0], atol=1e-3)


def test_no_attention_context_is_the_top_layer_final_state_of_both_directions():
  """h_S: the top encoder layer's forward state after the last real token and backward state
  after the first token, concatenated."""
  model, variables = make(attention="none")
  src, _ = toy_batch()
  p = variables["params"]
  enc = _encode(model, variables, src)
  lengths = jnp.sum(src != PAD_ID, 1)
  x = jnp.take(p["src_embedding"], src, axis=0)
  h0, _ = rnn.rnn_stack("lstm", {"layer_0": p["encoder"]["layer_0"]}, x, lengths,
                        bidirectional=True)
  layer1 = p["encoder"]["layer_1"]
  fw, _ = rnn.rnn_layer("lstm", layer1["fw"], h0, lengths)
  bw, _ = rnn.rnn_layer("lstm", layer1["bw"], h0, lengths, reverse=True)
  want = jnp.concatenate([fw[jnp.arange(3), lengths - 1], bw[:, 0]], -1)
  np.testing.assert_allclose(enc.context_BD, want, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_bridge_modes():
  src, _ = toy_batch()
  # copy: 2 layers each side, bidirectional sum keeps H -> decoder starts from the merged finals.
  model, variables = make(bidirectional_merge="sum", attention="luong")
  assert model.config.resolved_bridge == "copy" and "bridge" not in variables["params"]
  enc = _encode(model, variables, src)
  p = variables["params"]
  x = jnp.take(p["src_embedding"], src, axis=0)
  _, finals = rnn.rnn_stack("lstm", p["encoder"], x, jnp.sum(src != PAD_ID, 1),
                            bidirectional=True, merge="sum")
  for layer in range(2):  # every layer, c and h: forward + backward final states
    for k in range(2):
      np.testing.assert_allclose(enc.initial_carry.rnn[layer][k],
                                 finals[layer][0][k] + finals[layer][1][k], rtol=RTOL, atol=ATOL)
  # auto with concat (2H != H) projects.
  model, variables = make(attention="luong")
  assert model.config.resolved_bridge == "project"
  assert set(variables["params"]["bridge"]) == {"state_0", "state_1"}  # LSTM: c and h
  enc = _encode(model, variables, src)
  assert enc.initial_carry.rnn[0][1].shape == (3, 8)
  assert np.abs(np.asarray(enc.initial_carry.rnn[0][1])).max() > 0
  # zero.
  model, variables = make(bridge="zero", cell="gru")
  enc = _encode(model, variables, src)
  for leaf in jax.tree.leaves(enc.initial_carry.rnn):
    np.testing.assert_array_equal(leaf, 0.0)


def test_tied_output_projection_is_the_target_embedding():
  model, variables = make(tie_embeddings=True, attention="luong")
  params = variables["params"]
  assert set(params["output"]) == {"b"}  # no separate output matrix
  assert params["readout"]["W"].shape[-1] == model.config.embed_size
  src, tgt_in = toy_batch()
  base = _forward(model, variables, src, tgt_in)
  # Changing the embedding row of a token never fed to the decoder changes only its own logit.
  bumped = jax.tree.map(lambda x: x, variables)
  bumped["params"]["tgt_embedding"] = params["tgt_embedding"].at[12].add(1.0)
  out = _forward(model, bumped, src, tgt_in)
  np.testing.assert_allclose(out[..., :12], base[..., :12], rtol=RTOL, atol=ATOL)
  assert not np.allclose(out[..., 12], base[..., 12])


def test_shared_embeddings_use_one_table():
  model, variables = make(share_embeddings=True, src_vocab_size=13)
  assert "tgt_embedding" not in variables["params"]


@pytest.mark.slow
def test_bfloat16_compute_with_float32_params_tracks_float32():
  model32, variables = make(attention="luong", input_feeding=True)
  model16 = Seq2Seq(ModelConfig(**{**model32.config.to_dict(), "dtype": "bfloat16"}))
  src, tgt_in = toy_batch()
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  logits32 = _forward(model32, variables, src, tgt_in)
  logits16 = _forward(model16, variables, src, tgt_in)
  assert logits16.dtype == jnp.float32 and np.isfinite(logits16).all()
  np.testing.assert_allclose(logits16, logits32, atol=0.05)
  assert not np.array_equal(logits16, logits32)  # it really computed in bfloat16


@pytest.mark.slow
def test_bfloat16_params_track_float32_with_the_same_weights():
  model, variables = make(param_dtype="bfloat16", dtype="bfloat16")
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(variables))
  model32 = Seq2Seq(ModelConfig(**{**model.config.to_dict(), "dtype": "float32",
                                   "param_dtype": "float32"}))
  as32 = jax.tree.map(lambda x: x.astype(jnp.float32), variables)
  src, tgt_in = toy_batch()
  logits = _forward(model, variables, src, tgt_in)
  assert logits.dtype == jnp.float32 and np.isfinite(logits).all()
  np.testing.assert_allclose(logits, _forward(model32, as32, src, tgt_in), atol=0.05)


@pytest.mark.slow
def test_dropout_is_active_only_when_not_deterministic_and_follows_the_rng():
  model, variables = make(dropout=0.3, attention="bahdanau")
  src, tgt_in = toy_batch()
  run = lambda seed: _forward(model, variables, src, tgt_in, False, jax.random.key(seed))  # noqa: E731
  eval_logits = _forward(model, variables, src, tgt_in)
  np.testing.assert_array_equal(run(0), run(0))
  assert not np.allclose(run(0), run(1))
  assert not np.allclose(run(0), eval_logits)


def test_decoder_carry_and_encoded_are_pytrees_that_can_be_tiled():
  """Search (beam) repeats carries and encodings per hypothesis with plain tree maps."""
  model, variables = make(attention="luong", input_feeding=True)
  src, _ = toy_batch()
  enc = _encode(model, variables, src)
  tiled = jax.tree.map(lambda x: jnp.repeat(x, 2, axis=0), enc)
  assert isinstance(tiled, model_lib.Encoded)
  logits, carry, _ = _step(model, variables, tiled, tiled.initial_carry, jnp.full((6,), BOS_ID))
  assert logits.shape == (6, 13) and isinstance(carry, model_lib.DecoderCarry)
  single, _, _ = _step(model, variables, enc, enc.initial_carry, jnp.full((3,), BOS_ID))
  np.testing.assert_allclose(logits[::2], single, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.slow
def test_every_config_combination_traces_with_the_right_shapes():
  """Catches configs that validate but fail at init/apply (abstract evaluation, no compile)."""
  src = jax.ShapeDtypeStruct((2, 5), jnp.int32)
  tgt = jax.ShapeDtypeStruct((2, 4), jnp.int32)
  checked = 0
  cells, atts = ["lstm", "gru", "rnn"], ["none", "bahdanau", "luong-dot", "luong-general",
                                             "location"]
  for cell, att, bidi, merge, feed in itertools.product(cells, atts, [False, True],
                                                        ["concat", "sum"], [False, True]):
    attention, _, score = att.partition("-")
    # Layer counts and tied embeddings alternate over (cell, attention) instead of doubling the
    # grid: each cell and each attention still meets both layer counts.
    layers = (2, 2) if (cells.index(cell) + atts.index(att)) % 2 else (1, 2)
    tie = layers == (2, 2)
    if (feed and attention != "luong") or (merge == "sum" and not bidi):
      continue
    kw = dict(src_vocab_size=9, tgt_vocab_size=9, embed_size=4, hidden_size=6, cell=cell,
              attention=attention, attention_score=score or "general", bidirectional=bidi,
              bidirectional_merge=merge, input_feeding=feed, tie_embeddings=tie,
              encoder_layers=layers[0], decoder_layers=layers[1], residual=True, dropout=0.1)
    if score == "dot" and bidi and merge == "concat":
      kw["encoder_hidden_size"] = 3
    model = Seq2Seq(ModelConfig(**kw))
    variables = jax.eval_shape(functools.partial(model.init, method=Seq2Seq.create_params),
                               jax.random.key(0))
    logits = jax.eval_shape(
        lambda v, s, t: model.apply(v, s, t, deterministic=False,  # noqa: B023
                                    rngs={"dropout": jax.random.key(0)}), variables, src, tgt)
    assert logits.shape == (2, 4, 9) and logits.dtype == jnp.float32
    enc = jax.eval_shape(lambda v, s: model.apply(v, s, method=Seq2Seq.encode),  # noqa: B023
                         variables, src)
    step, _ = jax.eval_shape(
        lambda v, e, c, y: model.apply(v, e, c, y, method=Seq2Seq.decode_step),  # noqa: B023
        variables, enc, enc.initial_carry, jax.ShapeDtypeStruct((2,), jnp.int32))
    assert step.shape == (2, 9)
    checked += 1
  assert checked == 63  # 54 before the location attention
