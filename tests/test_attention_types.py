"""The attention table: a type registered here, in the test file only, trains and decodes with no
change to the model code (the point of `s2s_jax.attention.TYPES`), and the config checks come
from the entries."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from s2s_jax import ModelConfig, Seq2Seq, optim, search, training
from s2s_jax import attention as attn
from s2s_jax import model as model_lib
from s2s_jax.special_ids import BOS_ID, EOS_ID


def _scaled_init(rng, sizes, param_dtype):
  return {"W_a": jax.nn.initializers.lecun_normal()(rng, (sizes.memory, sizes.query), param_dtype),
          "log_scale": jnp.zeros((), param_dtype)}


def _scaled_keys(params, memory_BSD, dtype):
  return (memory_BSD.astype(dtype) @ params["W_a"].astype(dtype)).astype(dtype)


def _scaled_scores(params, h_BTH, keys_BSH, prev_weights_BS, dtype):
  del prev_weights_BS
  return (jnp.einsum("bth,bsh->bts", h_BTH.astype(dtype), keys_BSH).astype(jnp.float32)
          * jnp.exp(params["log_scale"].astype(jnp.float32)))


def _uniform_scores(params, s_BH, keys_BSA, prev_weights_BS, dtype):
  del params, s_BH, prev_weights_BS, dtype
  return jnp.zeros(keys_BSA.shape[:2], jnp.float32)


# A Luong-style type with a learned temperature, and a parameterless 'previous' type whose
# context is the mean of the real memory positions: both unknown to s2s_jax.
TOYS = {
    "toy_scaled": attn.AttentionType(attn.CURRENT, init=_scaled_init, keys=_scaled_keys,
                                     scores=_scaled_scores, input_feeding=True),
    "toy_uniform": attn.AttentionType(attn.PREVIOUS, scores=_uniform_scores),
}


@pytest.fixture(autouse=True)
def toys():
  for name, kind in TOYS.items():
    attn.register(name, kind)
  yield
  for name in TOYS:
    del attn.TYPES[name]


def _config(attention: str, **kw) -> ModelConfig:
  sizes = dict(src_vocab_size=12, tgt_vocab_size=11, embed_size=6, hidden_size=8,
               encoder_hidden_size=4, encoder_layers=1, decoder_layers=1)
  return ModelConfig(**{**sizes, "attention": attention, **kw})


def _batch(B: int = 4, S: int = 6, T: int = 5, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  lengths = np.array([6, 2, 4, 5])[:B]
  src = np.where(np.arange(S)[None] < lengths[:, None], rng.integers(4, 12, (B, S)), 0)
  src[np.arange(B), lengths - 1] = EOS_ID
  tgt = rng.integers(4, 11, (B, T))
  tgt_in = np.concatenate([np.full((B, 1), BOS_ID), tgt[:, :-1]], axis=1)
  return {"src": src.astype(np.int32), "tgt_in": tgt_in.astype(np.int32),
          "tgt_out": tgt.astype(np.int32)}


def _params(cfg: ModelConfig):
  return Seq2Seq(cfg).init(jax.random.PRNGKey(0), method=Seq2Seq.create_params)["params"]


def test_a_registered_type_is_a_valid_attention_with_its_own_parameters():
  assert {"toy_scaled", "toy_uniform"} <= set(attn.names())
  params = _params(_config("toy_scaled"))
  assert set(params["attention"]) == {"W_a", "log_scale"}
  assert "attention" not in _params(_config("toy_uniform"))
  # The cell's input: a 'previous' type feeds its context (D = 2 x 4), a 'current' one does not.
  assert _config("toy_uniform").decoder_input_size == 6 + 8
  assert _config("toy_scaled").decoder_input_size == 6
  assert _config("toy_scaled", input_feeding=True).decoder_input_size == 6 + 8
  with pytest.raises(ValueError, match="already registered"):
    attn.register("toy_scaled", TOYS["toy_scaled"])


def test_a_registered_type_trains_every_parameter_including_its_own():
  cfg = _config("toy_scaled", input_feeding=True, dropout=0.1)
  tx = optim.make_optimizer({"name": "adam", "clip_norm": 1.0, "accumulate_steps": 1})
  state = training.create_train_state(jax.random.PRNGKey(1), Seq2Seq(cfg), tx,
                                      optax.constant_schedule(1e-2))
  before = jax.device_get(state.params)
  step = jax.jit(functools.partial(training.train_step, label_smoothing=0.0))
  state, metrics = step(state, _batch(), jax.random.PRNGKey(2))
  assert np.isfinite(float(metrics["loss_sum"])) and float(metrics["tokens"]) == 20
  moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), before, jax.device_get(state.params))
  assert all(jax.tree.leaves(moved)), moved
  assert float(state.params["attention"]["log_scale"]) != 0.0


@pytest.mark.parametrize("name,feed", [("toy_scaled", False), ("toy_scaled", True),
                                       ("toy_uniform", False)])
def test_teacher_forced_logits_equal_step_by_step_decoding_with_a_registered_type(name, feed):
  cfg = _config(name, input_feeding=feed)
  params, batch = _params(cfg), _batch()
  enc = model_lib.encode(params, cfg, batch["src"])
  logits_BTV, weights_BTS = model_lib.decode(params, cfg, enc, batch["tgt_in"])
  carry = enc.initial_carry
  for t in range(batch["tgt_in"].shape[1]):
    step_BV, carry, w_BS = model_lib.decode_step(params, cfg, enc, carry, batch["tgt_in"][:, t])
    np.testing.assert_allclose(step_BV, logits_BTV[:, t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w_BS, weights_BTS[:, t], rtol=1e-5, atol=1e-6)
  mask_BS = batch["src"] != 0
  np.testing.assert_allclose(np.asarray(weights_BTS).sum(-1), 1.0, rtol=1e-5)
  assert np.all(np.asarray(weights_BTS)[np.broadcast_to(~mask_BS[:, None], weights_BTS.shape)]
                == 0)
  if name == "toy_uniform":  # the weights are uniform over each sentence's real positions
    want = mask_BS / mask_BS.sum(1, keepdims=True)
    np.testing.assert_allclose(weights_BTS[:, 0], want, rtol=1e-6)


def test_beam_search_with_a_registered_type_scores_its_hypotheses_as_teacher_forcing_does():
  cfg = _config("toy_scaled", input_feeding=True)
  params, src = _params(cfg), _batch()["src"]
  opts = search.SearchOptions(beam_size=4, nbest=2, alpha=0.0, max_len_ratio=1.0,
                              max_len_offset=2)
  out = jax.device_get(search.search_jit(params, cfg, src, opts))
  assert out.tokens_BRT.shape[:2] == (4, 2)
  tf_logits = jax.jit(lambda p, s, t: model_lib.decode(p, cfg, model_lib.encode(p, cfg, s), t)[0])
  for rank in range(2):
    length = out.length_BR[:, rank]
    tokens = out.tokens_BRT[:, rank]
    tgt_in = np.concatenate([np.full((4, 1), BOS_ID), tokens[:, :-1]], axis=1)
    logits = np.asarray(tf_logits(params, src, tgt_in), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    for b in range(4):
      want = float(sum(logp[b, t, tokens[b, t]] for t in range(length[b])))
      assert out.logprob_BR[b, rank] == pytest.approx(want, abs=1e-4)
      assert out.score_BR[b, rank] == pytest.approx(want, abs=1e-4)  # alpha 0: no penalty


def test_config_checks_come_from_the_entries_and_name_the_types_that_allow_an_option():
  with pytest.raises(ValueError, match=r"input_feeding=True needs attention='luong' or "
                                       r"'toy_scaled' \(got attention='toy_uniform'\)"):
    _config("toy_uniform", input_feeding=True)
  with pytest.raises(ValueError, match=r"attention_size is only used by attention='bahdanau' "
                                       r"or 'location' \(got attention='toy_scaled'\)"):
    _config("toy_scaled", attention_size=4)
  with pytest.raises(ValueError, match=r"ModelConfig.attention='toy_x' is invalid; allowed "
                                       r"values: 'none', 'bahdanau', 'luong', 'location', "
                                       r"'toy_scaled', 'toy_uniform'"):
    _config("toy_x")
  # 'luong/dot' checks its sizes through its entry: D = 2 x 4 = 8 = H passes, 2 x 3 does not.
  _config("luong", attention_score="dot")
  with pytest.raises(ValueError, match=r"attention_score='dot' needs the encoder output size "
                                       r"\(6\) to equal hidden_size \(8\)"):
    _config("luong", attention_score="dot", encoder_hidden_size=3)


def test_an_entry_needs_scores_unless_it_has_no_query():
  with pytest.raises(ValueError, match="scores is required"):
    attn.AttentionType(attn.CURRENT)
  with pytest.raises(ValueError, match="AttentionType.query='later'"):
    attn.AttentionType("later", scores=_uniform_scores)
