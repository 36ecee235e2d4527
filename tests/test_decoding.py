"""Search (s2s_jax.decoding) against scripted step functions and an exhaustive NumPy search.

The step functions here are position-dependent Markov models: the logits of step t depend only on
t and the previous token, `table_TVV[t, previous]`; the carry is the per-row step counter.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import decoding
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID

V = 6  # PAD, BOS, EOS and three real tokens


def markov_step(table_TVV):
  table = jnp.asarray(table_TVV, jnp.float32)

  def step_fn(t_N, token_N):
    return table[t_N, token_N], t_N + 1
  return step_fn


def random_table(seed, steps, vocab=V, sharpness=2.0):
  table = np.random.default_rng(seed).normal(size=(steps, vocab, vocab)) * sharpness
  table[..., PAD_ID] = table[..., BOS_ID] = -1e9  # never emitted
  return table


def log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def exhaustive(table_TVV, limit, alpha, kind, nbest):
  """Every complete output (EOS-terminated, or cut at `limit`) ranked by score: NumPy reference."""
  logp = log_softmax(table_TVV.astype(np.float64))
  real = [EOS_ID, *range(3, V)]
  outputs = []
  for length in range(1, limit + 1):
    for seq in itertools.product(real, repeat=length):
      if EOS_ID in seq[:-1] or (length < limit and seq[-1] != EOS_ID):
        continue
      total, previous = 0.0, BOS_ID
      for t, token in enumerate(seq):
        total, previous = total + logp[t, previous, token], token
      penalty = ((5 + length) / 6) ** alpha if kind == "gnmt" else length ** alpha
      outputs.append((total / penalty, total, seq))
  outputs.sort(key=lambda o: -o[0])
  return outputs[:nbest]


# Jitted with the table as an argument, so each option set compiles once.
@functools.partial(jax.jit, static_argnames=("beam_size", "max_length", "batch", "alpha",
                                             "length_penalty_kind", "nbest"))
def run_beam(table, beam_size, max_length, batch=1, limit_B=None, **kw):
  carry = decoding.tile_beams(jnp.zeros((batch,), jnp.int32), beam_size)
  return decoding.beam_search(markov_step(table), carry, batch, beam_size, max_length,
                              limit_B=limit_B, **kw)


@functools.partial(jax.jit, static_argnames=("batch", "max_length"))
def run_greedy(table, batch, max_length):
  return decoding.greedy(markov_step(table), jnp.zeros((batch,), jnp.int32), batch, max_length)


@functools.partial(jax.jit, static_argnames=("max_length",))
def run_sample(table, rng, row_ids, max_length):
  return decoding.sample(markov_step(table), jnp.zeros_like(row_ids), rng, row_ids.shape[0],
                         max_length, row_ids_B=row_ids)


@pytest.mark.parametrize(("alpha", "kind"), [(0.0, "gnmt"), (1.0, "gnmt"), (0.6, "gnmt"),
                                             (1.0, "average")])
def test_wide_beam_matches_exhaustive_search_n_best_and_scores(alpha, kind):
  # 3 real non-EOS tokens and 4 steps: at most 27 live hypotheses and 162 candidates per step,
  # so with K = 128 every candidate is kept and the search is exhaustive.
  for seed in range(3):
    table = random_table(seed, steps=4)
    out = run_beam(table, beam_size=128, max_length=4, alpha=alpha, length_penalty_kind=kind,
                   nbest=3)
    for rank, (score, total, seq) in enumerate(exhaustive(table, 4, alpha, kind, nbest=3)):
      want = list(seq) + [PAD_ID] * (4 - len(seq))
      np.testing.assert_array_equal(np.asarray(out.tokens_BRT[0, rank]), want)
      assert float(out.score_BR[0, rank]) == pytest.approx(score, rel=1e-5)
      assert float(out.logprob_BR[0, rank]) == pytest.approx(total, rel=1e-5)
      assert int(out.length_BR[0, rank]) == len(seq)


def test_beam_finds_the_better_path_that_greedy_misses():
  # From BOS: token 3 (p=0.6) or 4 (p=0.4). After 3, EOS has p=0.3; after 4, EOS has p=0.9.
  # Greedy commits to 3 and ends with p(3, EOS) = 0.18; the best output is (4, EOS) with 0.36.
  probs = np.full((V, V), 1e-9)
  probs[BOS_ID, [3, 4]] = [0.6, 0.4]
  probs[3, [EOS_ID, 3, 4, 5]] = [0.3, 0.25, 0.25, 0.2]
  probs[4, [EOS_ID, 3, 4, 5]] = [0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]
  probs[5, [EOS_ID, 3, 4, 5]] = [0.7, 0.1, 0.1, 0.1]
  probs[EOS_ID] = probs[5]
  table = np.log(np.broadcast_to(probs, (5, V, V)))
  greedy = run_greedy(table, 1, 5)
  np.testing.assert_array_equal(np.asarray(greedy.tokens_BRT[0, 0, :2]), [3, EOS_ID])
  beam = run_beam(table, beam_size=2, max_length=5)
  np.testing.assert_array_equal(np.asarray(beam.tokens_BRT[0, 0, :2]), [4, EOS_ID])
  assert float(beam.logprob_BR[0, 0]) == pytest.approx(np.log(0.36), rel=1e-5)


@pytest.mark.parametrize("vocab", [1000, 4096])
def test_row_argmax_and_top_k_equal_jax_reductions_with_ties_and_minus_inf(vocab):
  rng = np.random.default_rng(vocab)
  x = np.round(rng.normal(size=(40, vocab)) * 2) / 2  # few distinct values: many ties
  x[::3, rng.integers(0, vocab, 20)] = 9.0  # several tied maxima in a row
  x[1] = -np.inf
  x[2, : vocab - 5] = -np.inf  # the best few at the very end (the padded block)
  x = jnp.asarray(x, jnp.float32)
  np.testing.assert_array_equal(jax.jit(decoding.row_argmax)(x), jnp.argmax(x, axis=-1))
  for k in (1, 3, 10):
    got_values, got_index = jax.jit(decoding.row_top_k, static_argnums=1)(x, k)
    want_values, want_index = jax.lax.top_k(x, k)
    np.testing.assert_array_equal(got_values, want_values)
    np.testing.assert_array_equal(got_index, want_index)


def test_beam_size_one_equals_greedy_with_a_large_vocabulary():
  # V = 1200 takes the block-maxima paths of both searches (the small-V tests do not).
  table = random_table(0, steps=6, vocab=1200, sharpness=3.0)
  greedy = run_greedy(table, 4, 6)
  beam = run_beam(table, beam_size=1, max_length=6, batch=4)
  np.testing.assert_array_equal(np.asarray(beam.tokens_BRT), np.asarray(greedy.tokens_BRT))
  np.testing.assert_allclose(beam.logprob_BR, greedy.logprob_BR, rtol=1e-6)
  first = jax.nn.log_softmax(jnp.asarray(table[0, BOS_ID], jnp.float32))
  assert int(greedy.tokens_BRT[0, 0, 0]) == int(jnp.argmax(first))


def test_two_stage_beam_ranking_equals_one_top_k_over_all_candidates(monkeypatch):
  # V = 1600 > 8 * K * block: each beam's 2K best tokens are ranked first. A huge block size
  # forces the one-stage path (checked against exhaustive search above) on the same model.
  table = random_table(1, steps=8, vocab=1600, sharpness=1.0)
  # Five uniform steps (every beam at log-prob ~ -37, where float32 steps by 3.8e-6), then
  # token 20 one ulp (9.5e-7) above token 10: their candidates tie once the beam's log-prob is
  # added, and the tie must go to the lower token, as one top_k over all candidates breaks it.
  table[:5, :, 3:] = 0.0
  table[:6, :, EOS_ID] = -1e9
  table[5, :, 20] = 9.0
  table[5, :, 10] = np.nextafter(np.float32(9.0), np.float32(0.0))
  search = lambda: jax.jit(  # noqa: E731
      lambda tab: decoding.beam_search(markov_step(tab), decoding.tile_beams(
          jnp.zeros((3,), jnp.int32), 3), 3, 3, 8, alpha=0.6, nbest=3))(table)
  two_stage = search()
  monkeypatch.setattr(decoding, "_BLOCK", 10**6)
  one_stage = search()
  for got, want in zip(two_stage, one_stage, strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_beam_size_one_without_length_penalty_equals_greedy():
  for seed in range(4):
    table = random_table(seed, steps=8, sharpness=1.0)
    greedy = run_greedy(table, 3, 8)
    beam = run_beam(table, beam_size=1, max_length=8, batch=3)
    np.testing.assert_array_equal(np.asarray(beam.tokens_BRT), np.asarray(greedy.tokens_BRT))
    np.testing.assert_allclose(beam.logprob_BR, greedy.logprob_BR, rtol=1e-6)


def test_beam_respects_per_sentence_length_limits():
  table = random_table(0, steps=6)
  table[..., EOS_ID] = -30.0  # EOS practically never wins: outputs run to their limit
  out = run_beam(table, beam_size=3, max_length=6, batch=3, nbest=2,
                 limit_B=jnp.array([2, 6, 4]))
  lengths = np.asarray(out.length_BR)
  np.testing.assert_array_equal(lengths, [[2, 2], [6, 6], [4, 4]])
  tokens = np.asarray(out.tokens_BRT)
  for row, limit in enumerate([2, 6, 4]):
    assert (tokens[row, :, limit:] == PAD_ID).all() and (tokens[row, :, :limit] >= 3).all()


def test_beam_n_best_is_sorted_and_distinct():
  out = run_beam(random_table(5, steps=6, sharpness=1.0), beam_size=5, max_length=6, nbest=5,
                 alpha=0.6)
  scores = np.asarray(out.score_BR[0])
  assert (np.diff(scores) <= 0).all() and np.isfinite(scores).all()
  assert len({tuple(row) for row in np.asarray(out.tokens_BRT[0])}) == 5


@pytest.mark.parametrize(("kw", "match"), [
    ({"nbest": 4, "beam_size": 3}, "nbest=4"), ({"alpha": -1.0}, "alpha"),
    ({"length_penalty_kind": "wu"}, "length_penalty='wu'")])
def test_beam_rejects_bad_options(kw, match):
  options = {"beam_size": 3, **kw}
  with pytest.raises(ValueError, match=match):
    run_beam(random_table(0, steps=3), max_length=3, **options)


def test_greedy_follows_the_argmax_and_pads_after_eos():
  # Row r emits tokens 5, 6, ... and EOS after r + 1 tokens; the carry counts steps.
  def step_fn(carry, token_B):
    del token_B
    t_B, rows_B = carry
    want_B = jnp.where(t_B > rows_B, EOS_ID, 5 + t_B)
    return 10.0 * jax.nn.one_hot(want_B, 12), (t_B + 1, rows_B)

  out = decoding.greedy(step_fn, (jnp.zeros(3, jnp.int32), jnp.arange(3)), 3, max_length=6)
  np.testing.assert_array_equal(np.asarray(out.tokens_BRT[:, 0]), [
      [5, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
      [5, 6, EOS_ID, PAD_ID, PAD_ID, PAD_ID],
      [5, 6, 7, EOS_ID, PAD_ID, PAD_ID]])
  np.testing.assert_array_equal(np.asarray(out.length_BR[:, 0]), [2, 3, 4])


def test_greedy_cuts_rows_at_max_length_and_at_their_limit():
  step_fn = lambda c, t: (10.0 * jax.nn.one_hot(jnp.full(2, 7), 9), c)  # noqa: E731
  out = decoding.greedy(step_fn, (), 2, max_length=4, limit_B=jnp.array([4, 2]))
  np.testing.assert_array_equal(np.asarray(out.tokens_BRT[:, 0]),
                                [[7, 7, 7, 7], [7, 7, PAD_ID, PAD_ID]])


def test_sampling_is_reproducible_per_seed_and_row_id():
  table = random_table(1, steps=8, sharpness=0.5)
  run = lambda seed, rows: run_sample(  # noqa: E731
      table, jax.random.PRNGKey(seed), jnp.array(rows), 8).tokens_BRT[:, 0]
  a, b = np.asarray(run(0, [0, 1, 2, 3])), np.asarray(run(0, [0, 1, 2, 3]))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, np.asarray(run(1, [0, 1, 2, 3])))
  # A row's sample depends on its id, not on which rows share the batch or where it sits.
  np.testing.assert_array_equal(np.asarray(run(0, [2, 0]))[::-1], a[[0, 2]])


def test_sampling_frequencies_follow_the_model():
  probs = np.array([0, 0, 0.1, 0.2, 0.3, 0.4])
  table = np.log(np.maximum(np.broadcast_to(probs, (1, V, V)), 1e-12))
  out = decoding.sample(markov_step(table), jnp.zeros((4000,), jnp.int32),
                        jax.random.PRNGKey(3), 4000, 1)
  freq = np.bincount(np.asarray(out.tokens_BRT[:, 0, 0]), minlength=V) / 4000
  np.testing.assert_allclose(freq, probs, atol=0.03)


def test_top_k_sampling_never_leaves_the_top_k():
  table = random_table(2, steps=10, sharpness=0.3)  # flat: without filtering, all tokens occur
  out = decoding.sample(markov_step(table), jnp.zeros((256,), jnp.int32),
                        jax.random.PRNGKey(0), 256, 10, top_k=2)
  tokens = np.asarray(out.tokens_BRT[:, 0])
  for row in tokens:
    previous = BOS_ID
    for t, token in enumerate(row):
      if token == PAD_ID:
        break
      assert token in np.argsort(table[t, previous])[-2:]
      previous = token


def test_filter_logits_top_p_keeps_the_smallest_set_reaching_p():
  logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
  kept = np.isfinite(np.asarray(decoding.filter_logits(jnp.asarray(logits), top_p=0.75)))
  np.testing.assert_array_equal(kept, [[1, 1, 0, 0], [0, 0, 1, 1]])
  kept = np.isfinite(np.asarray(decoding.filter_logits(jnp.asarray(logits), top_p=0.1)))
  np.testing.assert_array_equal(kept, [[1, 0, 0, 0], [0, 0, 0, 1]])  # the top token always
  scaled = decoding.filter_logits(jnp.asarray(logits), temperature=2.0)
  np.testing.assert_allclose(scaled, logits / 2, rtol=1e-6)


def test_sampling_rejects_bad_options():
  args = (markov_step(random_table(0, 2)), jnp.zeros((1,), jnp.int32), jax.random.PRNGKey(0), 1, 2)
  with pytest.raises(ValueError, match="temperature"):
    decoding.sample(*args, temperature=0.0)
  with pytest.raises(ValueError, match="top_p"):
    decoding.sample(*args, top_p=0.0)
