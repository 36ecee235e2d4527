"""Joint CTC-attention (s2s_jax.ctc and its use in training and search), against brute-force
sums over every CTC alignment of tiny cases, an exhaustive joint search, and hand-built outputs.

Brute force: a CTC path assigns one symbol (blank or a label) to every frame; its collapse
merges repeats and drops blanks. P(labels) sums the paths that collapse to them, P(prefix) those
whose collapse starts with it.
"""

import functools
import itertools
import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import ctc, decoding, inference, search, training
from s2s_jax.model import ModelConfig, Seq2Seq
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID
from tests.test_decoding import exhaustive, log_softmax, markov_step, random_table, run_beam
from tests.test_inference import ENV, ROOT, WORDS

V = 6  # PAD (the blank), BOS, EOS and three labels
LABELS = (3, 4, 5)


def collapse(path):
  out, previous = [], None
  for symbol in path:
    if symbol != PAD_ID and symbol != previous:
      out.append(symbol)
    previous = symbol
  return tuple(out)


def brute_force(logp_FV, frames):
  """{collapsed output: probability} over every path of the first `frames` frames (NumPy)."""
  totals = {}
  for path in itertools.product((PAD_ID, *LABELS), repeat=frames):
    p = math.exp(sum(logp_FV[t, s] for t, s in enumerate(path)))
    totals[collapse(path)] = totals.get(collapse(path), 0.0) + p
  return totals


def random_logits(seed, shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * 1.5


def masked_log_softmax(logits):
  x = np.asarray(logits, np.float64).copy()
  x[..., [BOS_ID, EOS_ID]] = -np.inf
  return log_softmax(x)


# ----------------------------------------------------------------------------- loss


def test_ctc_loss_equals_the_brute_force_sum_over_alignments_per_example():
  logits = random_logits(0, (4, 5, V))
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], bool)
  targets = np.array([[3, 3, EOS_ID, 0], [4, EOS_ID, 0, 0], [3, 4, 5, EOS_ID], [5, EOS_ID, 0, 0]])
  got = ctc.loss(jnp.asarray(logits), jnp.asarray(mask), jnp.asarray(targets))
  expected = 0.0
  for b in range(4):
    label = tuple(t for t in targets[b] if t not in (EOS_ID, PAD_ID))
    expected -= math.log(brute_force(masked_log_softmax(logits[b]), mask[b].sum())[label])
  assert float(got.skipped) == 0
  np.testing.assert_allclose(float(got.nll_sum), expected, rtol=1e-5)


def test_examples_whose_labels_do_not_fit_their_frames_get_no_term_and_are_counted():
  logits = jnp.asarray(random_logits(1, (3, 4, V)))
  mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]], bool)
  # 3 3 3 needs 5 frames (two blanks between repeats); 3 4 needs 2 but row 2 has them; 3 4 5
  # needs 3 of row 2's 2 frames.
  targets = jnp.array([[3, 3, 3, EOS_ID], [3, 4, EOS_ID, 0], [3, 4, 5, EOS_ID]])
  assert ctc.feasible(ctc.labels(targets), mask.sum(1)).tolist() == [False, True, False]
  got = ctc.loss(logits, mask, targets)
  only = ctc.loss(logits[1:2], mask[1:2], targets[1:2])
  assert float(got.skipped) == 2 and float(only.skipped) == 0
  np.testing.assert_allclose(float(got.nll_sum), float(only.nll_sum), rtol=1e-6)
  grads = jax.grad(lambda x: ctc.loss(x, mask, targets).nll_sum)(logits)
  assert np.all(np.isfinite(grads)) and np.all(grads[0] == 0) and np.all(grads[2] == 0)


# ----------------------------------------------------------------------------- prefix scores


def prefix_log_score(scorer, tokens, row=0):
  """log P(prefix `tokens`) and log P(output == `tokens`) from the scorer's increments."""
  state, last, total = scorer.state, jnp.full((1,), BOS_ID), 0.0
  for token in tokens:
    increment_NV, expanded = scorer.score(state, last)
    total += float(increment_NV[row, token])
    state = scorer.select(expanded, jnp.array([row]), jnp.array([token]))
    last = jnp.array([token])
  increment_NV, _ = scorer.score(state, last)
  return total, total + float(increment_NV[row, EOS_ID])


@pytest.mark.parametrize("prefix", [(), (3,), (3, 3), (3, 4), (4, 3, 4), (5, 5, 5)])
def test_prefix_scores_equal_brute_force_enumeration_of_each_prefix_alignments(prefix):
  F, frames = 5, 4  # one padded frame: scores must be those of the first 4
  logits = random_logits(2, (1, F, V))
  mask = jnp.arange(F)[None] < frames
  scorer = ctc.prefix_scorer(ctc.log_probs(jnp.asarray(logits), mask), beam_size=1, weight=0.5)
  starts, whole = prefix_log_score(scorer, prefix)
  totals = brute_force(masked_log_softmax(logits[0]), frames)
  p_starts = sum(p for out, p in totals.items() if out[:len(prefix)] == prefix)
  p_whole = totals.get(prefix, 0.0)
  assert starts == pytest.approx(math.log(p_starts) if p_starts else -math.inf, abs=1e-5)
  assert whole == pytest.approx(math.log(p_whole) if p_whole else -math.inf, abs=1e-5)


def recursion_psi(logp_FV, prefix):
  """psi of every one-token extension of `prefix` [V] by the frame recursion of Watanabe et al.
  (2017), in float64 NumPy, one frame and one token at a time."""
  F = logp_FV.shape[0]
  rn, rb = np.full(F + 1, -np.inf), np.concatenate([[0.0], np.cumsum(logp_FV[:, PAD_ID])])
  last = None
  for c in (*prefix, None):
    psi = np.full(V, -np.inf)
    for d in range(V):
      phi = rb if d == last else np.logaddexp(rn, rb)
      psi[d] = np.logaddexp.reduce(phi[:-1] + logp_FV[:, d])
      if d == c:
        new_rn, new_rb = np.full(F + 1, -np.inf), np.full(F + 1, -np.inf)
        for t in range(F):
          new_rn[t + 1] = np.logaddexp(new_rn[t], phi[t]) + logp_FV[t, d]
          new_rb[t + 1] = np.logaddexp(new_rn[t], new_rb[t]) + logp_FV[t, PAD_ID]
    psi[EOS_ID] = np.logaddexp(rn[-1], rb[-1])
    psi[[PAD_ID, BOS_ID]] = -np.inf
    if c is not None:
      rn, rb, last = new_rn, new_rb, c
  return psi


@pytest.mark.parametrize("prefix", [(3,), (3, 4, 3), (5, 5)])
def test_prefix_scores_of_confident_models_match_the_float64_recursion(prefix):
  # Logits 25x sharper than the brute-force cases: log-probabilities down to ~-150, where the
  # scorer's scaled probabilities must still give every extension within e^-80 of the best.
  F = 12
  logits = random_logits(7, (1, F, V)) * 25
  scorer = ctc.prefix_scorer(ctc.log_probs(jnp.asarray(logits), jnp.ones((1, F), bool)), 1, 0.5)
  state, last = scorer.state, jnp.full((1,), BOS_ID)
  for token in prefix:
    _, expanded = scorer.score(state, last)
    state, last = scorer.select(expanded, jnp.array([0]), jnp.array([token])), jnp.array([token])
  increment_V = np.asarray(scorer.score(state, last)[0][0], np.float64)
  psi_V = recursion_psi(masked_log_softmax(logits[0]), prefix)
  expected_V = psi_V - recursion_psi(masked_log_softmax(logits[0]), prefix[:-1])[prefix[-1]]
  near_V = expected_V > np.max(expected_V) - 80
  assert np.sum(near_V & np.isfinite(expected_V)) >= 2
  np.testing.assert_allclose(increment_V[near_V], expected_V[near_V], rtol=1e-5, atol=1e-3)
  assert np.all(increment_V[~near_V] <= np.max(expected_V) - 70)  # far ones: low or -inf


def test_impossible_prefixes_score_minus_infinity_without_nan():
  logits = jnp.asarray(random_logits(3, (1, 2, V)))
  scorer = ctc.prefix_scorer(ctc.log_probs(logits, jnp.ones((1, 2), bool)), 1, 0.5)
  starts, whole = prefix_log_score(scorer, (3, 3))  # needs 3 frames
  assert starts == -math.inf and whole == -math.inf
  increment_NV, _ = scorer.score(scorer.state, jnp.full((1,), BOS_ID))
  assert not np.any(np.isnan(increment_NV))
  assert increment_NV[0, PAD_ID] == -np.inf and increment_NV[0, BOS_ID] == -np.inf


# ----------------------------------------------------------------------------- joint beam


def joint_exhaustive(table, logp_FV, frames, limit, weight, nbest):
  """Every complete output ranked by (1 - w) * attention + w * CTC log-probability (alpha 0)."""
  totals = brute_force(logp_FV, frames)
  ranked = []
  for _, att, seq in exhaustive(table, limit, 0.0, "gnmt", 10 ** 6):
    body = tuple(t for t in seq if t != EOS_ID)
    if seq[-1] == EOS_ID:
      p = totals.get(body, 0.0)
    else:  # cut at the limit: a prefix
      p = sum(q for out, q in totals.items() if out[:len(body)] == body)
    if p > 0:
      ranked.append(((1 - weight) * att + weight * math.log(p), att, seq))
  ranked.sort(key=lambda r: -r[0])
  return ranked[:nbest]


@pytest.mark.parametrize("weight", [0.3, 1.0])
def test_wide_joint_beam_matches_exhaustive_joint_search_n_best_and_scores(weight):
  limit, F = 3, 4
  table = random_table(4, limit, sharpness=1.5)
  logits = random_logits(5, (1, F, V))
  logp = ctc.log_probs(jnp.asarray(logits), jnp.ones((1, F), bool))
  K = 40  # wider than every prefix set: the search is exact
  scorer = ctc.prefix_scorer(logp, K, weight)
  out = decoding.beam_search(markov_step(table), jnp.zeros((K,), jnp.int32), 1, K, limit,
                             nbest=3, prefix=scorer)
  expected = joint_exhaustive(table, masked_log_softmax(logits[0]), F, limit, weight, 3)
  for r, (score, att, seq) in enumerate(expected):
    got = [int(t) for t in out.tokens_BRT[0, r] if t != PAD_ID]
    assert tuple(got) == seq
    assert float(out.score_BR[0, r]) == pytest.approx(score, abs=1e-4)
    assert float(out.logprob_BR[0, r]) == pytest.approx(att, abs=1e-4)


def test_joint_beam_with_a_scorer_that_adds_nothing_is_the_plain_beam():
  table = random_table(6, 6)
  plain = run_beam(table, 4, 6, batch=2, nbest=2)
  K, B = 4, 2
  zero = decoding.PrefixScorer(
      jnp.zeros((B * K,)), lambda state, last_N: (jnp.zeros((B * K, V)), None),
      lambda expanded, rows_N, tokens_N: jnp.zeros((B * K,)), 0.5)
  joint = decoding.beam_search(markov_step(table), jnp.zeros((B * K,), jnp.int32), B, K, 6,
                               nbest=2, prefix=zero)
  np.testing.assert_array_equal(joint.tokens_BRT, plain.tokens_BRT)
  np.testing.assert_allclose(joint.logprob_BR, plain.logprob_BR, rtol=1e-6)
  np.testing.assert_allclose(joint.score_BR, 0.5 * plain.score_BR, rtol=1e-6)


# ----------------------------------------------------------------------------- best path


def test_ctc_greedy_merges_repeats_drops_blanks_and_stops_at_the_limit():
  best = [[3, 3, 0, 3, 4, 4, 0], [5, 0, 5, 5, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]]
  logp = np.full((3, 7, V), -5.0, np.float32)
  for b, row in enumerate(best):
    logp[b, np.arange(7), row] = -0.1
  out = ctc.greedy(jnp.asarray(logp), max_length=5, limit_B=jnp.array([5, 5, 5]))
  assert out.tokens_BRT[:, 0].tolist() == [[3, 3, 4, EOS_ID, 0], [5, 5, EOS_ID, 0, 0],
                                           [EOS_ID, 0, 0, 0, 0]]
  assert out.length_BR[:, 0].tolist() == [4, 3, 1]
  np.testing.assert_allclose(out.logprob_BR[:, 0], -0.7, rtol=1e-6)
  cut = ctc.greedy(jnp.asarray(logp), max_length=5, limit_B=jnp.array([2, 5, 5]))
  assert cut.tokens_BRT[0, 0].tolist() == [3, 3, 0, 0, 0] and int(cut.length_BR[0, 0]) == 2


# ----------------------------------------------------------------------------- the model


def tiny_config(**kw):
  return ModelConfig(src_vocab_size=12, tgt_vocab_size=9, embed_size=8, hidden_size=16,
                     encoder_layers=1, decoder_layers=1, **kw)


def tiny_batch():
  src = np.array([[4, 5, 6, 7, EOS_ID], [8, 9, EOS_ID, 0, 0], [10, 11, 4, EOS_ID, 0]], np.int32)
  tgt_out = np.array([[3, 4, 5, EOS_ID], [6, EOS_ID, 0, 0], [7, 7, 8, EOS_ID]], np.int32)
  tgt_in = np.where(tgt_out == PAD_ID, PAD_ID, np.roll(tgt_out, 1, axis=1))
  tgt_in[:, 0] = BOS_ID
  tgt_in = np.where(tgt_in == EOS_ID, PAD_ID, tgt_in)
  return {"src": jnp.asarray(src), "tgt_in": jnp.asarray(tgt_in), "tgt_out": jnp.asarray(tgt_out)}


@pytest.mark.parametrize("weight", [0.4, 1.0])
def test_train_step_loss_is_the_weighted_sum_of_the_cross_entropy_and_ctc_terms(weight):
  import optax
  cfg = tiny_config(ctc_weight=weight, ctc_upsample=2)
  state = training.create_train_state(jax.random.PRNGKey(0), Seq2Seq(cfg), optax.sgd(0.1),
                                      optax.constant_schedule(1.0))
  batch = tiny_batch()
  _, m = training.train_step(state, batch, jax.random.PRNGKey(1), ctc_weight=weight)
  variables = {"params": state.params}
  logits, ctc_out = Seq2Seq(cfg).apply(variables, batch["src"], batch["tgt_in"],
                                       method=Seq2Seq.with_ctc)
  ctc_sum = float(ctc.loss(*ctc_out, batch["tgt_out"]).nll_sum)
  ce_sum = 0.0
  if weight < 1:
    from s2s_jax import losses
    ce_sum = float(losses.cross_entropy(logits, batch["tgt_out"])[0])
    assert float(m["ce_sum"]) == pytest.approx(ce_sum, rel=1e-5)
  else:
    assert logits is None and "ce_sum" not in m
  assert float(m["ctc_sum"]) == pytest.approx(ctc_sum, rel=1e-5)
  assert float(m["loss_sum"]) == pytest.approx(weight * ctc_sum + (1 - weight) * ce_sum,
                                               rel=1e-5)
  assert float(m["tokens"]) == 10 and float(m["ctc_skipped"]) == 0


def test_ctc_only_training_leaves_the_decoder_untouched_and_moves_the_encoder():
  import optax
  cfg = tiny_config(ctc_weight=1.0)
  state = training.create_train_state(jax.random.PRNGKey(0), Seq2Seq(cfg), optax.sgd(0.5),
                                      optax.constant_schedule(1.0))
  new, _ = training.train_step(state, tiny_batch(), jax.random.PRNGKey(1), ctc_weight=1.0)
  for name in ("decoder", "readout", "output", "attention"):
    for a, b in zip(jax.tree.leaves(state.params[name]), jax.tree.leaves(new.params[name]),
                    strict=True):
      np.testing.assert_array_equal(a, b)
  for name in ("encoder", "ctc", "src_embedding"):
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(state.params[name]),
                                              jax.tree.leaves(new.params[name]), strict=True))


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_data_parallel_ctc_step_on_8_devices_equals_the_single_device_step(mode):
  import optax

  from s2s_jax import parallel
  cfg = tiny_config(ctc_weight=0.5)
  state = training.create_train_state(jax.random.PRNGKey(0), Seq2Seq(cfg), optax.adam(1e-2),
                                      optax.constant_schedule(1.0))
  batch = {k: np.concatenate([v] * 3)[:8] for k, v in tiny_batch().items()}
  step = functools.partial(training.train_step, ctc_weight=0.5)
  single, m1 = jax.jit(step)(state, batch, jax.random.PRNGKey(1))
  par = parallel.DataParallel(mode)
  fn, placed = par.compile_step(step, par.place(state))
  multi, m2 = fn(placed, batch, jax.random.PRNGKey(1))
  np.testing.assert_allclose(float(par.host(m2)["ctc_sum"]), float(m1["ctc_sum"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(par.host(multi).params),
                  strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bad_ctc_settings_are_one_line_naming_the_field():
  with pytest.raises(ValueError, match=r"ModelConfig.ctc_weight=1.5 is invalid"):
    tiny_config(ctc_weight=1.5)
  with pytest.raises(ValueError, match=r"ModelConfig.ctc_upsample=2 needs a CTC head"):
    tiny_config(ctc_upsample=2)
  with pytest.raises(ValueError, match=r"ctc_weight=-0.1 must be in \[0, 1\]"):
    search.SearchOptions(ctc_weight=-0.1)
  cfg = tiny_config()
  params = Seq2Seq(cfg).init(jax.random.PRNGKey(0), method=Seq2Seq.create_params)["params"]
  src = tiny_batch()["src"]
  for opts, name in ((search.SearchOptions(ctc_weight=0.3), "ctc_weight=0.3"),
                     (search.SearchOptions(method="ctc_greedy"), "method='ctc_greedy'")):
    with pytest.raises(ValueError, match=f"{name} needs a model with a CTC head"):
      search.search_jit(params, cfg, src, opts)


# ----------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def ctc_run(copy_dict, tmp_path_factory):
  """configs/tiny.py with ctc_weight 0.5, 40 steps on the copy task: (workdir, final). Two CTC
  frames per source step, so that repeated letters ("aaab": 4 labels + 2 blanks) always fit."""
  from configs import tiny
  root = tmp_path_factory.mktemp("ctc_run")
  config = tiny.get_config()
  config.data.options.dict_path = copy_dict
  config.data.data_dir = str(root / "tfds")
  config.train.num_steps = 40
  config.model.ctc_weight = 0.5
  config.model.ctc_upsample = 2
  return root / "run", training.train_and_evaluate(config, str(root / "run"))


@pytest.mark.slow
def test_a_ctc_run_logs_both_terms_and_decodes_with_every_method(ctc_run):
  workdir, final = ctc_run
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  trained = [r for r in rows if "train_ctc" in r]
  assert len(trained) == 40
  for r in trained:
    assert r["train_loss"] == pytest.approx(0.5 * r["train_ce"] + 0.5 * r["train_ctc"], rel=1e-4)
  assert final["ctc_examples"] > 0 and final["ctc_skipped"] == 0
  model = inference.load(str(workdir))
  assert model.default_options().ctc_weight == 0.5
  for kw in ({"method": "ctc_greedy"}, {"ctc_weight": 0.5, "nbest": 2}, {"ctc_weight": 0.0}):
    results = model.decode(WORDS[:3], **kw)
    assert len(results) == 3 and all(r.hypotheses for r in results)


@pytest.mark.slow
def test_ensembles_and_averaged_checkpoints_of_a_ctc_run_decode_jointly(ctc_run):
  import s2s_jax
  model = inference.load(str(ctc_run[0]))
  twice = s2s_jax.ensemble([model, model])
  assert twice.default_options().ctc_weight == 0.5
  for kw in ({"method": "ctc_greedy"}, {"nbest": 2}):
    alone, doubled = model.decode(WORDS, **kw), twice.decode(WORDS, **kw)
    assert [r.text for r in doubled] == [r.text for r in alone]
    assert [h.score for r in doubled for h in r.hypotheses] == pytest.approx(
        [h.score for r in alone for h in r.hypotheses], abs=1e-4)
  averaged = inference.load(str(ctc_run[0]), average_last=2)
  assert "ctc" in averaged.params and all(r.hypotheses for r in averaged.decode(WORDS[:3]))


@pytest.mark.parametrize("kw", [{"dtype": "bfloat16"}, {"param_dtype": "bfloat16"}])
def test_bfloat16_ctc_steps_are_finite_and_near_the_float32_loss(kw):
  import optax
  losses_by_dtype = []
  for extra in ({}, kw):
    cfg = tiny_config(ctc_weight=0.5, **extra)
    state = training.create_train_state(jax.random.PRNGKey(0), Seq2Seq(cfg), optax.adam(1e-2),
                                        optax.constant_schedule(1.0))
    _, m = training.train_step(state, tiny_batch(), jax.random.PRNGKey(1), ctc_weight=0.5)
    assert np.isfinite(float(m["grad_norm"]))
    losses_by_dtype.append(float(m["ctc_sum"]))
  assert losses_by_dtype[1] == pytest.approx(losses_by_dtype[0], rel=5e-2)


@pytest.mark.slow
@pytest.mark.parametrize("kw", [{"method": "ctc_greedy"}, {"ctc_weight": 0.5, "beam_size": 3}])
def test_ctc_outputs_do_not_depend_on_batch_composition(ctc_run, kw):
  model = inference.load(str(ctc_run[0]))
  together = model.decode(WORDS, batch_size=64, **kw)
  for word, batched in list(zip(WORDS, together, strict=True))[:5]:
    alone = model.decode([word], batch_size=1, **kw)[0]
    for a, b in zip(alone.hypotheses, batched.hypotheses, strict=True):
      assert a.ids == b.ids and a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.slow
def test_joint_weight_zero_gives_exactly_the_beam_of_the_model_without_its_ctc_head(ctc_run):
  import dataclasses
  model = inference.load(str(ctc_run[0]))
  cfg = model.model_config
  bare_cfg = dataclasses.replace(cfg, ctc_weight=0.0, ctc_upsample=1)
  bare_params = {k: v for k, v in model.params.items() if k != "ctc"}
  src = jnp.asarray([[4, 5, 6, EOS_ID, 0], [7, 4, 8, 9, EOS_ID]])
  joint = search.search_jit(model.params, cfg, src, search.SearchOptions(nbest=3, ctc_weight=0.0))
  plain = search.search_jit(bare_params, bare_cfg, src, search.SearchOptions(nbest=3))
  for a, b in zip(joint, plain, strict=True):
    np.testing.assert_array_equal(a, b)
  weighted = search.search_jit(model.params, cfg, src, search.SearchOptions(nbest=3,
                                                                            ctc_weight=0.5))
  assert not np.array_equal(weighted.score_BR, plain.score_BR)


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--ctc_weight=0.3", "--method=ctc_greedy"])
def test_decode_cli_refuses_ctc_decoding_of_a_model_without_a_ctc_head(tiny_run, flag):
  done = subprocess.run([sys.executable, str(ROOT / "decode.py"), f"--workdir={tiny_run[0]}",
                         flag], input="abc\n", env=ENV, capture_output=True, text=True)
  assert done.returncode == 2
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("decode.py: error: ") and "needs a model with a CTC head" in last
  assert "Traceback" not in done.stderr
