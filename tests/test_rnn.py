"""The lax.scan RNN core against NumPy loops, finite differences and padding invariances."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import rnn
from tests import reference as ref

CELLS = ["lstm", "gru", "rnn"]
RTOL, ATOL = 1e-5, 1e-6


def random_cell_params(seed, cell, in_size, hidden):
  """Random parameters in the documented layout (biases nonzero so every term is exercised)."""
  r = np.random.default_rng(seed)
  G = rnn.NUM_GATES[cell] * hidden
  p = {"W_i": r.normal(0, 0.5, (in_size, G)), "b_i": r.normal(0, 0.5, (G,)),
       "W_h": r.normal(0, 0.5, (hidden, G))}
  if cell == "gru":
    p["b_h"] = r.normal(0, 0.5, (G,))
  return {k: jnp.asarray(v, jnp.float32) for k, v in p.items()}


def padded_batch(seed, lengths, T, D):
  r = np.random.default_rng(seed)
  x = r.normal(0, 1, (len(lengths), T, D)).astype(np.float32)
  for b, n in enumerate(lengths):
    x[b, n:] = 0.0
  return jnp.asarray(x), jnp.asarray(lengths, jnp.int32)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_layer_matches_numpy_loop_per_sequence(cell, reverse):
  params = random_cell_params(0, cell, 3, 4)
  lengths = [5, 3, 1, 0]
  x, lengths_B = padded_batch(1, lengths, 5, 3)
  out, final = rnn.rnn_layer(cell, params, x, lengths_B, reverse=reverse)
  for b, n in enumerate(lengths):
    ref_out, ref_final = ref.run_sequence(cell, params, np.asarray(x[b, :n]), reverse=reverse)
    if n:
      np.testing.assert_allclose(out[b, :n], ref_out, rtol=RTOL, atol=ATOL)
      for got, want in zip(final, ref_final, strict=True):
        np.testing.assert_allclose(got[b], want, rtol=RTOL, atol=ATOL)
    else:
      for got in final:  # an empty sequence keeps the initial (zero) state
        np.testing.assert_array_equal(got[b], 0.0)
    np.testing.assert_array_equal(out[b, n:], 0.0)  # padded outputs are exactly zero


@pytest.mark.parametrize("cell", CELLS)
def test_layer_without_lengths_equals_full_lengths(cell):
  params = random_cell_params(2, cell, 3, 4)
  x, _ = padded_batch(3, [4, 4], 4, 3)
  full = jnp.array([4, 4])
  for reverse in (False, True):
    a_out, a_fin = rnn.rnn_layer(cell, params, x, None, reverse=reverse)
    b_out, b_fin = rnn.rnn_layer(cell, params, x, full, reverse=reverse)
    np.testing.assert_allclose(a_out, b_out, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(a_fin[-1], b_fin[-1], rtol=RTOL, atol=ATOL)


def test_initial_carry_is_used():
  params = random_cell_params(4, "lstm", 2, 3)
  x, lengths = padded_batch(5, [3], 3, 2)
  c0 = (jnp.full((1, 3), 0.5), jnp.full((1, 3), -0.25))
  out, _ = rnn.rnn_layer("lstm", params, x, lengths, c0)
  p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
  want, _ = ref.lstm_sequence(p64, np.asarray(x[0], np.float64), np.full(3, -0.25),
                              np.full(3, 0.5))
  np.testing.assert_allclose(out[0], want, rtol=RTOL, atol=ATOL)


def test_reverse_padded_reverses_within_length_and_is_an_involution():
  x = jnp.array([[1, 2, 3, 0, 0], [1, 2, 3, 4, 5], [7, 0, 0, 0, 0]])
  lengths = jnp.array([3, 5, 1])
  r = rnn.reverse_padded(x, lengths)
  np.testing.assert_array_equal(r, [[3, 2, 1, 0, 0], [5, 4, 3, 2, 1], [7, 0, 0, 0, 0]])
  np.testing.assert_array_equal(rnn.reverse_padded(r, lengths), x)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences_of_numpy_reference(cell):
  """d/d(eps) of a loss at (params + eps*v, x + eps*u), JAX autodiff vs central differences of
  the float64 NumPy reference."""
  params = random_cell_params(6, cell, 3, 4)
  x, lengths_B = padded_batch(7, [4, 2], 4, 3)
  r = np.random.default_rng(8)
  w_out = r.normal(size=(2, 4, 4))
  w_fin = r.normal(size=(2, 4))
  v = {k: r.normal(size=p.shape) for k, p in params.items()}
  u = r.normal(size=x.shape) * (np.asarray(x) != 0)

  def jax_loss(p, x):
    out, final = rnn.rnn_layer(cell, p, x, lengths_B, reverse=True)
    return jnp.sum(out * w_out) + jnp.sum(final[-1] * w_fin)

  def np_loss(p, x):
    total = 0.0
    for b, n in enumerate([4, 2]):
      out, final = ref.run_sequence(cell, p, x[b, :n], reverse=True)
      total += np.sum(out * w_out[b, :n]) + np.sum(final[-1] * w_fin[b])
    return total

  g_p, g_x = jax.grad(jax_loss, argnums=(0, 1))(params, x)
  autodiff = sum(np.sum(np.asarray(g_p[k]) * v[k]) for k in v) + np.sum(np.asarray(g_x) * u)
  p64 = {k: np.asarray(p, np.float64) for k, p in params.items()}
  x64 = np.asarray(x, np.float64)
  eps = 1e-6
  plus = np_loss({k: p64[k] + eps * v[k] for k in v}, x64 + eps * u)
  minus = np_loss({k: p64[k] - eps * v[k] for k in v}, x64 - eps * u)
  np.testing.assert_allclose(autodiff, (plus - minus) / (2 * eps), rtol=1e-4)


def test_lstm_custom_backward_matches_autodiff_of_a_plain_scan():
  """`lstm_recurrence`'s hand-written VJP vs autodiff of a scan of `cell_step` with the same
  freezing rule: gradients for every weight, the inputs and the initial carry (c and h), through
  a loss on the outputs and on both final states, with padded rows."""
  params = random_cell_params(11, "lstm", 3, 4)
  x, lengths = padded_batch(12, [5, 2, 4], 5, 3)
  r = np.random.default_rng(13)
  c0, h0 = (jnp.asarray(r.normal(size=(3, 4)), jnp.float32) for _ in range(2))
  w_out, w_c, w_h = (r.normal(size=s) for s in ((3, 5, 4), (3, 4), (3, 4)))

  def plain(p, x, c0, h0):
    xw_TBG = rnn.project_inputs(p, x).swapaxes(0, 1)
    live_TB = jnp.arange(5)[:, None] < lengths[None, :]

    def body(carry, inputs):
      xw, live = inputs
      new = rnn.cell_step("lstm", p, carry, xw)
      carry = tuple(jnp.where(live[:, None], n, o) for n, o in zip(new, carry, strict=True))
      return carry, jnp.where(live[:, None], new[-1], 0.0)

    final, out_TBH = jax.lax.scan(body, (c0, h0), (xw_TBG, live_TB))
    return out_TBH.swapaxes(0, 1), final

  def loss(layer_fn, p, x, c0, h0):
    out, (c, h) = layer_fn(p, x, c0, h0)
    return jnp.sum(jnp.tanh(out) * w_out) + jnp.sum(c * w_c) + jnp.sum(h * w_h)

  custom = lambda p, x, c0, h0: rnn.rnn_layer("lstm", p, x, lengths, (c0, h0))  # noqa: E731
  assert loss(custom, params, x, c0, h0) == pytest.approx(float(loss(plain, params, x, c0, h0)))
  got = jax.grad(lambda *a: loss(custom, *a), argnums=(0, 1, 2, 3))(params, x, c0, h0)
  want = jax.grad(lambda *a: loss(plain, *a), argnums=(0, 1, 2, 3))(params, x, c0, h0)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)


def _count_primitive(jaxpr, name):
  """Occurrences of a primitive in a jaxpr, including nested sub-jaxprs (pjit, custom_jvp...)."""
  count = 0
  for eqn in jaxpr.eqns:
    count += eqn.primitive.name == name
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      count += _count_primitive(sub, name)
  return count


def _scan_eqns(jaxpr):
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scan":
      found.append(eqn)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found.extend(_scan_eqns(sub))
  return found


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_scan_body_holds_only_the_recurrent_matmul(cell, with_lengths):
  """The input projection is hoisted: one matmul before the scan, one (h @ W_h) inside it."""
  params = random_cell_params(9, cell, 3, 4)
  x, lengths = padded_batch(10, [3, 2], 3, 3)
  fn = lambda p, x, n: rnn.rnn_layer(cell, p, x, n if with_lengths else None)  # noqa: E731
  jaxpr = jax.make_jaxpr(fn)(params, x, lengths).jaxpr
  scans = _scan_eqns(jaxpr)
  assert len(scans) == 1
  body = scans[0].params["jaxpr"].jaxpr
  assert _count_primitive(body, "dot_general") == 1
  assert _count_primitive(jaxpr, "dot_general") == 2  # + the hoisted [B*T, D] x [D, G] product
  matmul_shapes = [tuple(e.outvars[0].aval.shape) for e in body.eqns
                   if e.primitive.name == "dot_general"]
  assert matmul_shapes in ([(2, rnn.NUM_GATES[cell] * 4)], [])  # direct, or nested in a pjit


@pytest.mark.parametrize("merge", ["concat", "sum"])
@pytest.mark.parametrize("cell", CELLS)
def test_bidirectional_stack_is_padding_invariant(cell, merge):
  """A sequence alone and inside a longer padded batch: same outputs and final states in both
  directions; the backward pass starts at the sequence's own last token."""
  params = rnn.init_stack_params(jax.random.key(0), cell, 3, 4, 2, bidirectional=True,
                                 merge=merge)
  x_long, lengths = padded_batch(11, [7, 4, 2], 7, 3)
  # Garbage in the padding must not leak either.
  x_long = x_long.at[1, 4:].set(5.0).at[2, 2:].set(-3.0)
  kw = dict(bidirectional=True, merge=merge, residual=True)
  out_b, fin_b = rnn.rnn_stack(cell, params, x_long, lengths, **kw)
  out_1, fin_1 = rnn.rnn_stack(cell, params, x_long[1:2, :4], jnp.array([4]), **kw)
  np.testing.assert_allclose(out_b[1, :4], out_1[0], rtol=RTOL, atol=ATOL)
  np.testing.assert_array_equal(out_b[1, 4:], 0.0)
  for layer_b, layer_1 in zip(fin_b, fin_1, strict=True):
    for direction_b, direction_1 in zip(layer_b, layer_1, strict=True):
      for state_b, state_1 in zip(direction_b, direction_1, strict=True):
        np.testing.assert_allclose(state_b[1], state_1[0], rtol=RTOL, atol=ATOL)


def test_bidirectional_layer_matches_numpy_forward_and_backward():
  params = {"fw": random_cell_params(12, "lstm", 3, 4), "bw": random_cell_params(13, "lstm", 3, 4)}
  x, lengths = padded_batch(14, [5, 3], 5, 3)
  out, finals = rnn.rnn_stack("lstm", {"layer_0": params}, x, lengths, bidirectional=True)
  for b, n in enumerate([5, 3]):
    fw_out, fw_final = ref.run_sequence("lstm", params["fw"], np.asarray(x[b, :n]))
    bw_out, bw_final = ref.run_sequence("lstm", params["bw"], np.asarray(x[b, :n]), reverse=True)
    np.testing.assert_allclose(out[b, :n], np.concatenate([fw_out, bw_out], -1), rtol=RTOL,
                               atol=ATOL)
    np.testing.assert_allclose(finals[0][0][1][b], fw_final[1], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(finals[0][1][1][b], bw_final[1], rtol=RTOL, atol=ATOL)


def test_residual_stack_adds_each_upper_layer_input():
  params = rnn.init_stack_params(jax.random.key(1), "gru", 4, 4, 3)
  x, lengths = padded_batch(15, [4, 2], 4, 4)
  out, _ = rnn.rnn_stack("gru", params, x, lengths, residual=True)
  h0, _ = rnn.rnn_layer("gru", params["layer_0"], x, lengths)  # no residual around layer 0
  h1 = rnn.rnn_layer("gru", params["layer_1"], h0, lengths)[0] + h0
  h2 = rnn.rnn_layer("gru", params["layer_2"], h1, lengths)[0] + h1
  np.testing.assert_allclose(out, h2, rtol=RTOL, atol=ATOL)


def test_stack_step_loop_equals_scanned_stack():
  """The per-step twin used by the decoder computes the same as the layer-major scan."""
  params = rnn.init_stack_params(jax.random.key(2), "lstm", 3, 3, 2)
  x, _ = padded_batch(16, [5, 5], 5, 3)
  carries0 = [(jnp.full((2, 3), 0.1), jnp.full((2, 3), -0.2))] * 2
  out, finals = rnn.rnn_stack("lstm", params, x, None, carries0, residual=True)
  carries, steps = carries0, []
  for t in range(5):
    carries, h = rnn.stack_step("lstm", params, carries, x[:, t], residual=True)
    steps.append(h)
  np.testing.assert_allclose(jnp.stack(steps, 1), out, rtol=RTOL, atol=ATOL)
  for a, b in zip(carries, finals, strict=True):
    np.testing.assert_allclose(a[0], b[0], rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_dropout_between_layers_uses_the_explicit_rng():
  params = rnn.init_stack_params(jax.random.key(3), "lstm", 3, 8, 2)
  x, lengths = padded_batch(17, [4, 3], 4, 3)
  run = lambda rng: rnn.rnn_stack("lstm", params, x, lengths, dropout_rate=0.5, rng=rng)[0]  # noqa: E731
  a, a_again = run(jax.random.key(0)), run(jax.random.key(0))
  b, off = run(jax.random.key(1)), run(None)
  np.testing.assert_array_equal(a, a_again)
  assert not np.allclose(a, b)
  assert not np.allclose(a, off)
  np.testing.assert_array_equal(off, rnn.rnn_stack("lstm", params, x, lengths)[0])
  # A single layer has no "between": dropout leaves it untouched.
  one = {"layer_0": params["layer_0"]}
  np.testing.assert_array_equal(
      rnn.rnn_stack("lstm", one, x, lengths, dropout_rate=0.5, rng=jax.random.key(0))[0],
      rnn.rnn_stack("lstm", one, x, lengths)[0])


def test_dropout_zeroes_and_rescales():
  x = jnp.ones((1000,))
  y = rnn.dropout(jax.random.key(0), x, 0.25)
  kept = np.asarray(y) != 0
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)
  assert 0.65 < kept.mean() < 0.85


def test_lstm_init_sets_forget_bias_and_orthogonal_recurrent_blocks():
  p = rnn.init_cell_params(jax.random.key(0), "lstm", 5, 6, forget_bias=2.0)
  np.testing.assert_array_equal(p["b_i"][6:12], 2.0)
  np.testing.assert_array_equal(p["b_i"][:6], 0.0)
  np.testing.assert_array_equal(p["b_i"][12:], 0.0)
  for k in range(4):
    block = np.asarray(p["W_h"][:, 6 * k:6 * (k + 1)])
    np.testing.assert_allclose(block.T @ block, np.eye(6), atol=1e-5)


def test_unknown_cell_is_rejected():
  with pytest.raises(ValueError, match="cell='lstmx' is invalid; allowed values: lstm, gru, rnn"):
    rnn.init_cell_params(jax.random.key(0), "lstmx", 2, 2)


def test_stack_frames_concatenates_neighbours_and_zeroes_past_the_length():
  x = jnp.arange(1.0, 11.0).reshape(1, 5, 2)  # frames [1 2] [3 4] [5 6] [7 8] [9 10]
  x = x.at[0, 3:].set(99.0)  # frames 3 and 4 lie past the length 3
  out, lengths = rnn.stack_frames(x, jnp.array([3]), 2)
  np.testing.assert_array_equal(out, [[[1, 2, 3, 4], [5, 6, 0, 0], [0, 0, 0, 0]]])
  assert lengths.tolist() == [2]
  assert rnn.reduced_lengths(jnp.array([1, 8, 9, 17]), 2, 3).tolist() == [1, 1, 2, 3]


def test_pyramidal_stack_is_padding_invariant_and_equals_its_layers_composed(cell="lstm"):
  """LAS's pyramid: three bidirectional layers, frames paired before the second and the third.
  A sequence alone and inside a padded batch (garbage in the padding) give the same outputs on
  its ceil(len / 4) top steps and the same final states; and the stack is its layers composed
  by hand with `stack_frames`."""
  params = rnn.init_stack_params(jax.random.key(1), cell, 3, 4, 3, bidirectional=True,
                                 reduce_factor=2)
  x, lengths = padded_batch(5, [13, 6, 9], 13, 3)
  x = x.at[1, 6:].set(4.0).at[2, 9:].set(-2.0)
  kw = dict(bidirectional=True, reduce_factor=2)
  out_b, fin_b = rnn.rnn_stack(cell, params, x, lengths, **kw)
  top = rnn.reduced_lengths(lengths, 2, 2)
  assert out_b.shape == (3, 4, 8) and top.tolist() == [4, 2, 3]
  for b, n in [(1, 6)]:  # the sequence with garbage after its 6 steps
    out_1, fin_1 = rnn.rnn_stack(cell, params, x[b:b + 1, :n], jnp.array([n]), **kw)
    np.testing.assert_allclose(out_b[b, :int(top[b])], out_1[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(out_b[b, int(top[b]):], 0.0)
    for layer_b, layer_1 in zip(fin_b, fin_1, strict=True):
      for state_b, state_1 in zip(jax.tree.leaves(layer_b), jax.tree.leaves(layer_1), strict=True):
        np.testing.assert_allclose(state_b[b], state_1[0], rtol=RTOL, atol=ATOL)
  h, n = x, lengths
  for i in range(3):
    if i > 0:
      h, n = rnn.stack_frames(h, n, 2)
    layer = params[f"layer_{i}"]
    fw, _ = rnn.rnn_layer(cell, layer["fw"], h, n)
    bw, _ = rnn.rnn_layer(cell, layer["bw"], h, n, reverse=True)
    h = jnp.concatenate([fw, bw], axis=-1)
  np.testing.assert_allclose(out_b, h, rtol=RTOL, atol=ATOL)


def test_pyramidal_stack_refuses_residual_connections_and_missing_lengths():
  params = rnn.init_stack_params(jax.random.key(0), "lstm", 3, 4, 2, reduce_factor=2)
  x, lengths = padded_batch(0, [4], 4, 3)
  with pytest.raises(ValueError, match="pyramidal stack"):
    rnn.rnn_stack("lstm", params, x, lengths, residual=True, reduce_factor=2)
  with pytest.raises(ValueError, match="pyramidal stack"):
    rnn.rnn_stack("lstm", params, x, None, reduce_factor=2)
