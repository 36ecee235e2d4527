"""Coverage (s2s_jax.coverage) against NumPy loops, in the model (teacher-forced = step by step
for each attention type, beam scores = teacher-forced log-probabilities, so the carry's coverage
follows its beam; a new model attends as one without coverage), its loss in the train step, and
its config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import coverage, training
from s2s_jax.model import ModelConfig, Seq2Seq
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID
from tests.test_copy_attention import assert_beam_scores_are_teacher_forced


def numpy_term(p, c):
  return np.tanh(c[..., None] * p["w"] + p["b"]) @ p["v"]


def numpy_weights_over_steps(p, scores, mask):
  """One row, one step at a time: the coverage is the sum of the weights so far."""
  B, T, S = scores.shape
  out = np.zeros((B, T, S))
  for b in range(B):
    c = np.zeros(S)
    for t in range(T):
      e = scores[b, t] + numpy_term(p, c)
      e = np.where(mask[b], e, -np.inf)
      w = np.exp(e - e[mask[b]].max())
      w = np.where(mask[b], w, 0.0)
      out[b, t] = w / w.sum()
      c = c + out[b, t]
  return out


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.normal(size=coverage.UNITS).astype(np.float32) for k in ("w", "b", "v")}


def test_the_coverage_weights_equal_a_numpy_loop_with_padding():
  rng = np.random.default_rng(1)
  p = _params()
  scores = rng.normal(size=(2, 4, 5)).astype(np.float32) * 2
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  got = coverage.weights_over_steps({k: jnp.asarray(v) for k, v in p.items()},
                                    jnp.asarray(scores), jnp.asarray(mask))
  np.testing.assert_allclose(got, numpy_weights_over_steps(p, scores, mask), rtol=1e-5,
                             atol=1e-6)
  assert np.all(np.asarray(got)[0, :, 3:] == 0.0)  # padding gets exactly nothing


def test_the_coverage_loss_equals_a_numpy_loop_and_is_zero_at_padded_targets():
  rng = np.random.default_rng(2)
  w = rng.random((2, 4, 3)).astype(np.float32)
  w /= w.sum(-1, keepdims=True)
  targets = np.array([[5, 6, EOS_ID, PAD_ID], [5, 6, 7, EOS_ID]], np.int32)
  expected = np.zeros((2, 4))
  for b in range(2):
    c = np.zeros(3)
    for t in range(4):
      if targets[b, t] != PAD_ID:
        expected[b, t] = np.minimum(w[b, t], c).sum()
      c = c + w[b, t]
  got = coverage.loss(jnp.asarray(w), jnp.asarray(targets))
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
  assert float(got[0, 3]) == 0.0 and float(got[0, 0]) == 0.0  # padding; nothing covered yet


def _model(**kw):
  cfg = ModelConfig(src_vocab_size=12, tgt_vocab_size=12, embed_size=8, hidden_size=16,
                    attention=kw.pop("attention", "luong"), coverage=True, **kw)
  model = Seq2Seq(cfg)
  params = model.init(jax.random.PRNGKey(0), method=Seq2Seq.create_params)["params"]
  # v = 0 at init makes the term 0: give it a value, so the tests see coverage at work.
  params["coverage"] = {k: jnp.asarray(v) for k, v in _params(3).items()}
  return model, params


SRC = jnp.array([[5, 9, 7, 2, 0, 0], [6, 6, 8, 10, 11, 2]], jnp.int32)
TGT_IN = jnp.array([[BOS_ID, 9, 7, 5], [BOS_ID, 11, 6, 8]], jnp.int32)


@pytest.mark.parametrize(("attention", "extra"), [
    ("luong", {}), ("luong", {"input_feeding": True}), ("bahdanau", {}), ("location", {}),
    ("luong", {"copy_attention": True}),
])
def test_teacher_forced_coverage_logits_equal_the_step_by_step_ones(attention, extra):
  model, params = _model(attention=attention, **extra)
  forced, weights = model.apply({"params": params}, SRC, TGT_IN, return_attention=True)
  enc = model.apply({"params": params}, SRC, method=Seq2Seq.encode)
  carry = enc.initial_carry
  for t in range(TGT_IN.shape[1]):
    step, carry, w = model.apply({"params": params}, enc, carry, TGT_IN[:, t],
                                 method=Seq2Seq.decode_step, return_attention=True)
    np.testing.assert_allclose(step, forced[:, t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w, weights[:, t], rtol=1e-5, atol=1e-6)
  # The carry's coverage is the sum of every step's weights.
  np.testing.assert_allclose(carry.coverage_BS, weights.sum(1), rtol=1e-5, atol=1e-6)


def test_a_new_coverage_model_attends_as_the_same_model_without_coverage():
  cfg = dict(src_vocab_size=12, tgt_vocab_size=12, embed_size=8, hidden_size=16)
  plain, with_cov = Seq2Seq(ModelConfig(**cfg)), Seq2Seq(ModelConfig(**cfg, coverage=True))
  params = with_cov.init(jax.random.PRNGKey(0), method=Seq2Seq.create_params)["params"]
  assert float(jnp.abs(params["coverage"]["v"]).max()) == 0.0
  others = {k: v for k, v in params.items() if k != "coverage"}
  a = plain.apply({"params": others}, SRC, TGT_IN)
  b = with_cov.apply({"params": params}, SRC, TGT_IN)
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_a_strong_negative_coverage_term_moves_attention_along_the_source():
  # Scores that prefer position 0, then 1, then 2 at every step: without coverage each step
  # attends to 0; a term that punishes covered positions walks the attention along the source.
  scores = jnp.broadcast_to(jnp.array([12.0, 8.0, 4.0, 0.0]), (1, 3, 4))
  mask = jnp.ones((1, 4), bool)
  off = {"w": jnp.ones(coverage.UNITS), "b": jnp.zeros(coverage.UNITS),
         "v": jnp.zeros(coverage.UNITS)}
  assert np.asarray(jnp.argmax(coverage.weights_over_steps(off, scores, mask), -1)).tolist() \
      == [[0, 0, 0]]
  on = {**off, "w": jnp.full(coverage.UNITS, 1.0), "v": jnp.full(coverage.UNITS, -2.0)}
  assert np.asarray(jnp.argmax(coverage.weights_over_steps(on, scores, mask), -1)).tolist() \
      == [[0, 1, 2]]


def test_beam_scores_of_a_coverage_model_are_its_teacher_forced_log_probabilities():
  model, params = _model()
  assert_beam_scores_are_teacher_forced(model, params, SRC, nbest=3)


def test_the_train_step_adds_the_weighted_coverage_loss_to_the_cross_entropy():
  from configs import tiny
  from s2s_jax import optim
  config = tiny.get_config()
  model, _ = _model()
  state = training.create_train_state(jax.random.PRNGKey(0), model,
                                      optim.make_optimizer(config.optimizer),
                                      optim.make_schedule(config.optimizer, 10))
  tgt_out = jnp.array([[9, 7, 5, EOS_ID], [11, 6, 8, EOS_ID]], jnp.int32)
  batch = {"src": SRC, "tgt_in": TGT_IN, "tgt_out": tgt_out}
  _, plain = training.train_step(state, batch, jax.random.PRNGKey(1))
  _, m = training.train_step(state, batch, jax.random.PRNGKey(1), coverage_weight=0.5)
  # dropout is 0: the CE term is the plain step's loss, and the total adds half the coverage.
  assert float(m["ce_sum"]) == pytest.approx(float(plain["loss_sum"]), rel=1e-6)
  _, weights = model.apply({"params": state.params}, SRC, TGT_IN, return_attention=True)
  cov = float(jnp.sum(coverage.loss(weights, tgt_out)))
  assert cov > 0 and float(m["coverage_sum"]) == pytest.approx(cov, rel=1e-5)
  assert float(m["loss_sum"]) == pytest.approx(float(plain["loss_sum"]) + 0.5 * cov, rel=1e-5)


def test_coverage_without_attention_is_refused():
  with pytest.raises(ValueError, match="coverage=True sums attention weights.*got 'none'"):
    ModelConfig(src_vocab_size=12, tgt_vocab_size=12, attention="none", coverage=True)


@pytest.mark.parametrize(("fields", "message"), [
    ({"train.coverage_loss_weight": 1.0}, "needs model.coverage=True and model.ctc_weight=0"),
    ({"train.coverage_loss_weight": -1.0}, "must be a number >= 0"),
    ({"train.coverage_loss_weight": 1.0, "model.coverage": True, "model.ctc_weight": 0.3},
     "needs model.coverage=True and model.ctc_weight=0"),
])
def test_a_coverage_loss_the_model_cannot_have_is_refused_naming_the_field(fields, message):
  from configs import tiny
  config = tiny.get_config()
  config.model.attention = "luong"
  for key, value in fields.items():
    section, name = key.split(".")
    config[section][name] = value
  with pytest.raises(ValueError, match=message):
    training.train_and_evaluate(config, "/nonexistent/never/created")
