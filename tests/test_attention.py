"""Attention scores, masking and context against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax import attention as attn


def test_masked_softmax_gives_padding_exactly_zero_and_rows_sum_to_one():
  r = np.random.default_rng(0)
  scores = jnp.asarray(r.normal(size=(3, 2, 5)) * 10, jnp.float32)
  mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
  w = np.asarray(attn.masked_softmax(scores, mask[:, None, :]))
  np.testing.assert_array_equal(w[~np.broadcast_to(np.asarray(mask)[:, None], w.shape)], 0.0)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(w[2, :, 0], 1.0)
  # Same as a softmax over the real positions only.
  s = np.asarray(scores[0, 0, :3], np.float64)
  np.testing.assert_allclose(w[0, 0, :3], np.exp(s) / np.exp(s).sum(), rtol=1e-5)


def test_masked_softmax_of_a_row_without_real_positions_is_zero_not_nan():
  w = attn.masked_softmax(jnp.ones((1, 4)), jnp.zeros((1, 4), bool))
  np.testing.assert_array_equal(w, 0.0)


def test_bahdanau_scores_match_numpy():
  r = np.random.default_rng(1)
  q, keys, v = r.normal(size=(2, 3)), r.normal(size=(2, 4, 3)), r.normal(size=(3,))
  got = attn.bahdanau_scores(*(jnp.asarray(a, jnp.float32) for a in (q, keys, v)))
  want = np.array([[v @ np.tanh(q[b] + keys[b, j]) for j in range(4)] for b in range(2)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_luong_dot_and_general_scores_match_numpy():
  r = np.random.default_rng(2)
  h, mem, W_a = r.normal(size=(2, 3, 4)), r.normal(size=(2, 5, 6)), r.normal(size=(6, 4))
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  # general: score = h_t . (W_a^T-projected memory) with keys = memory @ W_a
  got = attn.luong_scores(f32(h), f32(mem) @ f32(W_a))
  want = np.einsum("bth,bsh->bts", h, mem @ W_a)
  want_loop = np.array([[[h[b, t] @ (W_a.T @ mem[b, s]) for s in range(5)] for t in range(3)]
                        for b in range(2)])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(want, want_loop, rtol=1e-10)
  dot = attn.luong_scores(f32(h), f32(mem[..., :4]))
  np.testing.assert_allclose(dot[1, 2, 3], h[1, 2] @ mem[1, 3, :4], rtol=1e-5)


def test_attend_is_the_weighted_sum_of_memory():
  r = np.random.default_rng(3)
  mem = r.normal(size=(2, 4, 3)).astype(np.float32)
  w = jax.nn.softmax(jnp.asarray(r.normal(size=(2, 5, 4)), jnp.float32))
  got = attn.attend(w, jnp.asarray(mem))
  np.testing.assert_allclose(got[1, 2], (np.asarray(w)[1, 2, :, None] * mem[1]).sum(0), rtol=1e-5)
  # Two programs summing the same products: ulp-level differences, which a sum that cancels to
  # ~0.01 shows as ~1e-6 relative, hence the small atol beside rtol.
  np.testing.assert_allclose(attn.attend(w[:, 0], jnp.asarray(mem)), got[:, 0], rtol=1e-6,
                             atol=1e-7)


def test_conftest_provides_eight_cpu_devices():
  assert jax.device_count() == 8


def test_location_features_are_the_centred_convolution_of_the_previous_weights():
  rng = np.random.default_rng(4)
  prev = rng.random((2, 7)).astype(np.float32)
  filters = rng.normal(size=(5, 3)).astype(np.float32)
  got = np.asarray(attn.location_features(jnp.asarray(prev), jnp.asarray(filters)))
  want = np.zeros((2, 7, 3))
  for b in range(2):
    for j in range(7):
      for r in range(5):
        i = j + r - 2  # the filter is centred on position j
        if 0 <= i < 7:
          want[b, j] += prev[b, i] * filters[r]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_location_scores_match_numpy_and_their_weights_ignore_padding():
  rng = np.random.default_rng(5)
  B, S, A, K = 2, 6, 4, 3
  query, keys = rng.normal(size=(B, A)), rng.normal(size=(B, S, A))
  loc, U, v = rng.normal(size=(B, S, K)), rng.normal(size=(K, A)), rng.normal(size=(A,))
  got = attn.location_scores(*(jnp.asarray(x, jnp.float32) for x in (query, keys, loc, U, v)))
  want = np.array([[v @ np.tanh(keys[b, j] + query[b] + U.T @ loc[b, j]) for j in range(S)]
                   for b in range(B)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # A sentence of 4 real positions: padded weights are exactly zero and rows sum to one, and
  # the previous weights' zeros at padding leave the real positions' features as if alone.
  mask = jnp.arange(S)[None, :] < jnp.array([[S], [4]])
  weights = attn.masked_softmax(got, mask)
  np.testing.assert_array_equal(weights[1, 4:], 0.0)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
  filters = jnp.asarray(rng.normal(size=(3, K)), jnp.float32)
  padded = attn.location_features(weights, filters)
  alone = attn.location_features(weights[1:, :4], filters)
  np.testing.assert_allclose(padded[1, :4], alone[0], rtol=1e-6)
