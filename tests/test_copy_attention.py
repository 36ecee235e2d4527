"""Copy attention (the pointer-generator mixture, s2s_jax.pointer) against a NumPy loop, in the
model (teacher-forced = step by step; beam scores = teacher-forced log-probabilities; it can
emit a token its softmax does not favour), and its config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import decoding, pointer, training
from s2s_jax.model import ModelConfig, Seq2Seq
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID


def numpy_mixture(logits, weights, ids, g):
  """One row at a time, one source position at a time."""
  out = np.zeros_like(logits, dtype=np.float64)
  for b in range(logits.shape[0]):
    for t in range(logits.shape[1]):
      z = logits[b, t].astype(np.float64)
      p = np.exp(z - z.max())
      p = g[b, t, 0] * p / p.sum()
      for s, token in enumerate(ids[b]):
        p[token] += (1 - g[b, t, 0]) * weights[b, t, s]
      out[b, t] = np.log(p)
  return out


def test_the_mixture_equals_a_numpy_loop_with_repeated_and_padded_source_tokens():
  rng = np.random.default_rng(0)
  B, T, S, V = 2, 3, 5, 9
  logits = rng.normal(size=(B, T, V)).astype(np.float32) * 2
  ids = np.array([[4, 7, 4, 2, 0], [5, 6, 8, 2, 0]], np.int32)  # a repeat; EOS; padding
  weights = rng.random((B, T, S)).astype(np.float32)
  weights[:, :, -1] = 0.0  # padding gets no attention
  weights /= weights.sum(-1, keepdims=True)
  g = rng.random((B, T, 1)).astype(np.float32)
  got = pointer.mix(jnp.asarray(logits), jnp.asarray(weights), jnp.asarray(ids), jnp.asarray(g))
  np.testing.assert_allclose(got, numpy_mixture(logits, weights, ids, g), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, rtol=1e-5)
  # One step (no T axis) is the same function.
  step = pointer.mix(jnp.asarray(logits[:, 1]), jnp.asarray(weights[:, 1]), jnp.asarray(ids),
                     jnp.asarray(g[:, 1]))
  np.testing.assert_allclose(step, got[:, 1], rtol=1e-6)


def _model(**kw):
  cfg = ModelConfig(src_vocab_size=12, tgt_vocab_size=12, embed_size=8, hidden_size=16,
                    attention=kw.pop("attention", "luong"), copy_attention=True, **kw)
  model = Seq2Seq(cfg)
  params = model.init(jax.random.PRNGKey(0), method=Seq2Seq.create_params)["params"]
  return model, params


SRC = jnp.array([[5, 9, 7, 2, 0, 0], [6, 6, 8, 10, 11, 2]], jnp.int32)
TGT_IN = jnp.array([[BOS_ID, 9, 7, 5], [BOS_ID, 11, 6, 8]], jnp.int32)


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
def test_teacher_forced_copy_log_probs_equal_the_step_by_step_ones(attention):
  model, params = _model(attention=attention)
  forced = model.apply({"params": params}, SRC, TGT_IN)
  np.testing.assert_allclose(np.exp(forced).sum(-1), 1.0, rtol=1e-5)
  enc = model.apply({"params": params}, SRC, method=Seq2Seq.encode)
  carry = enc.initial_carry
  for t in range(TGT_IN.shape[1]):
    step, carry = model.apply({"params": params}, enc, carry, TGT_IN[:, t],
                              method=Seq2Seq.decode_step)
    np.testing.assert_allclose(step, forced[:, t], rtol=1e-5, atol=1e-5)


def test_a_closed_gate_emits_the_attended_source_token_whatever_the_softmax_says():
  model, params = _model()
  params = jax.tree.map(lambda x: x, params)
  params["copy"] = {"W": jnp.zeros_like(params["copy"]["W"]), "b": jnp.full((1,), -30.0)}
  params["output"]["b"] = params["output"]["b"].at[9].set(-50.0)  # the softmax never says 9
  enc = model.apply({"params": params}, SRC, method=Seq2Seq.encode)
  logp, _, weights = model.apply({"params": params}, enc, enc.initial_carry,
                                 jnp.full((2,), BOS_ID), method=Seq2Seq.decode_step,
                                 return_attention=True)
  # All mass is the attention's, gathered per token id.
  expected = np.zeros((2, 12))
  for b in range(2):
    for s, token in enumerate(np.asarray(SRC[b])):
      expected[b, token] += float(weights[b, s])
  np.testing.assert_allclose(np.exp(logp), expected, atol=1e-6)
  assert float(np.exp(logp[0, 9])) == pytest.approx(float(weights[0, 1]), rel=1e-5)


def assert_beam_scores_are_teacher_forced(model, params, src, beam_size=3, max_length=6,
                                          nbest=2):
  """Each n-best hypothesis' beam log-prob equals the sum of the model's teacher-forced
  log-probabilities of its tokens (so the carry the beam reorders follows its hypothesis)."""
  enc = model.apply({"params": params}, src, method=Seq2Seq.encode)
  tiled = decoding.tile_beams(enc, beam_size)

  def step(carry, tokens):
    return model.apply({"params": params}, tiled, carry, tokens, method=Seq2Seq.decode_step)

  out = decoding.beam_search(step, tiled.initial_carry, src.shape[0], beam_size, max_length,
                             alpha=0.0, nbest=nbest)
  for b in range(src.shape[0]):
    for r in range(nbest):
      tokens = [int(t) for t in out.tokens_BRT[b, r] if t != PAD_ID]
      tgt_in = jnp.array([[BOS_ID, *tokens[:-1]]], jnp.int32)
      logp = jax.nn.log_softmax(model.apply({"params": params}, src[b:b + 1], tgt_in)[0])
      total = sum(float(logp[t, tok]) for t, tok in enumerate(tokens))
      assert float(out.logprob_BR[b, r]) == pytest.approx(total, abs=1e-4)
  return out


def test_beam_scores_of_a_copy_model_are_its_teacher_forced_log_probabilities():
  model, params = _model()
  out = assert_beam_scores_are_teacher_forced(model, params, SRC)
  assert EOS_ID in np.asarray(out.tokens_BRT) or out.length_BR.max() == 6


@pytest.mark.parametrize(("kw", "message"), [
    ({"attention": "none"}, "needs attention \\(got 'none'\\)"),
    ({"source": "audio"}, "a token source \\(got 'audio'\\)"),
    ({"src_vocab_size": 20}, "one vocabulary for both sides \\(got sizes 20 and 12"),
])
def test_copy_attention_without_what_it_needs_is_refused_naming_it(kw, message):
  fields = {"src_vocab_size": 12, "tgt_vocab_size": 12, "copy_attention": True, **kw}
  with pytest.raises(ValueError, match=message):
    ModelConfig(**fields)


def test_training_refuses_copy_attention_without_a_shared_vocabulary():
  from configs import tiny
  config = tiny.get_config()
  config.model.copy_attention = True
  config.model.attention = "luong"
  config.data.shared_vocab = False
  with pytest.raises(ValueError, match="needs one vocabulary for both sides; set "
                     "data.shared_vocab=True"):
    training.train_and_evaluate(config, "/nonexistent/never/created")
