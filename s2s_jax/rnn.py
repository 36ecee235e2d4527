"""Recurrent core: LSTM / GRU / Elman cells as pure step functions, and the `lax.scan` layer.

Everything here is plain JAX over parameter dicts; the Flax module in `model.py` only owns
the parameters and calls these functions.

Shape legend: B batch, T time, D input features, H hidden units per direction, G = gates * H.
Time-major arrays (`*_TB*`) exist only inside the scan; every function takes and returns
batch-major arrays.

Cells (gate order inside the fused matrices in brackets):
  lstm [i, f, g, o]:  c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')
  gru  [r, z, n]:     r = sigmoid(x_r + h W_r + b_r);  z = sigmoid(x_z + h W_z + b_z);
                      n = tanh(x_n + r * (h W_n + b_n));  h' = (1 - z) * n + z * h
                      (the reset gate is applied after the recurrent matmul, as in cuDNN and
                      PyTorch, so the recurrent matmul stays a single fused [H, 3H] product)
  rnn  [h]:           h' = tanh(x W_i + b_i + h W_h)

Every gate pre-activation is split into an input part `x W_i + b_i`, computed for all time steps in
one matmul before the scan (`project_inputs`), and a recurrent part `h W_h`, the only matmul inside
the scan body. Carries are tuples of float32 arrays: `(c_BH, h_BH)` for the LSTM, `(h_BH,)`
otherwise; the hidden state is always `carry[-1]`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

CELL_TYPES = ("lstm", "gru", "rnn")
NUM_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MERGE_MODES = ("concat", "sum")

Params = dict[str, jax.Array]
Carry = tuple[jax.Array, ...]


def _check_cell(cell: str) -> None:
  if cell not in CELL_TYPES:
    raise ValueError(f"cell={cell!r} is invalid; allowed values: {', '.join(CELL_TYPES)}")


# ----------------------------------------------------------------------------- parameters


def init_cell_params(
    rng: jax.Array,
    cell: str,
    in_size: int,
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    param_dtype: Any = jnp.float32,
) -> Params:
  """Initial parameters of one cell: `W_i` [D, G], `b_i` [G], `W_h` [H, G] (+ `b_h` [G] for GRU).

  Input weights are LeCun-normal, recurrent weights orthogonal per gate, biases zero except the
  LSTM forget gate, which starts at `forget_bias` so that early training keeps the memory.
  """
  _check_cell(cell)
  num_gates = NUM_GATES[cell]
  k_i, k_h = jax.random.split(rng)
  W_i = jax.nn.initializers.lecun_normal()(k_i, (in_size, num_gates * hidden_size), param_dtype)
  # One batched QR for all gate blocks, in float32 (LAPACK has no bfloat16), then cast.
  Q_GHH = jax.random.orthogonal(k_h, hidden_size, (num_gates,), jnp.float32)
  W_h = Q_GHH.transpose(1, 0, 2).reshape(hidden_size, num_gates * hidden_size).astype(param_dtype)
  b_i = jnp.zeros((num_gates * hidden_size,), param_dtype)
  if cell == "lstm":
    b_i = b_i.at[hidden_size:2 * hidden_size].set(forget_bias)
  params = {"W_i": W_i, "b_i": b_i, "W_h": W_h}
  if cell == "gru":
    params["b_h"] = jnp.zeros((num_gates * hidden_size,), param_dtype)
  return params


def init_stack_params(
    rng: jax.Array,
    cell: str,
    in_size: int,
    hidden_size: int,
    num_layers: int,
    *,
    bidirectional: bool = False,
    merge: str = "concat",
    forget_bias: float = 1.0,
    param_dtype: Any = jnp.float32,
    reduce_factor: int = 1,
) -> dict[str, Any]:
  """Parameters of a layer stack: `{'layer_0': cell_params, ...}`; bidirectional layers hold
  `{'fw': cell_params, 'bw': cell_params}`. With `reduce_factor` r > 1 (a pyramidal stack, see
  `rnn_stack`), layers from the second on read r stacked frames of the layer below."""
  out_size = stack_output_size(hidden_size, bidirectional, merge)
  params = {}
  for i, k in enumerate(jax.random.split(rng, num_layers)):
    layer_in = in_size if i == 0 else reduce_factor * out_size
    keys = jax.random.split(k) if bidirectional else [k]
    cells = [init_cell_params(key, cell, layer_in, hidden_size, forget_bias=forget_bias,
                              param_dtype=param_dtype) for key in keys]
    params[f"layer_{i}"] = {"fw": cells[0], "bw": cells[1]} if bidirectional else cells[0]
  return params


def stack_output_size(hidden_size: int, bidirectional: bool, merge: str) -> int:
  """Feature size of a layer's outputs (and merged final states)."""
  return 2 * hidden_size if bidirectional and merge == "concat" else hidden_size


def zero_carry(cell: str, batch_size: int, hidden_size: int) -> Carry:
  """All-zero carry of one cell for a batch."""
  _check_cell(cell)
  zeros = jnp.zeros((batch_size, hidden_size), jnp.float32)
  return (zeros, zeros) if cell == "lstm" else (zeros,)


# ----------------------------------------------------------------------------- math


def dense_init(rng: jax.Array, in_size: int, out_size: int, param_dtype: Any) -> Params:
  """A dense layer's parameters: W [in, out] (LeCun normal) and b [out] (zeros)."""
  return {"W": jax.nn.initializers.lecun_normal()(rng, (in_size, out_size), param_dtype),
          "b": jnp.zeros((out_size,), param_dtype)}


def matmul(x: jax.Array, w: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
  """`x @ w` over the last axis of x, inputs cast to the compute dtype, accumulated in float32."""
  return jnp.einsum("...d,dg->...g", x.astype(dtype), w.astype(dtype),
                    preferred_element_type=jnp.float32)


def project_inputs(params: Params, x_BTD: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
  """The input half of every gate pre-activation, `x W_i + b_i`: [..., D] -> [..., G] float32.

  Works for one step ([B, D]) and for a whole sequence ([B, T, D]) alike: the scan layer calls it
  once for all steps, which turns T small matmuls into one large one.
  """
  return matmul(x_BTD, params["W_i"], dtype) + params["b_i"].astype(jnp.float32)


def cell_step(
    cell: str, params: Params, carry: Carry, xw_BG: jax.Array, dtype: Any = jnp.float32
) -> Carry:
  """One recurrence step given the projected input `xw_BG` (from `project_inputs`).

  The recurrent product `h W_h` is the only matmul; the rest is elementwise gate math in float32.
  """
  h_BH = carry[-1]
  hw_BG = matmul(h_BH, params["W_h"], dtype)
  if cell == "lstm":
    i, f, g, o = jnp.split(xw_BG + hw_BG, 4, axis=-1)
    c_BH = jax.nn.sigmoid(f) * carry[0] + jax.nn.sigmoid(i) * jnp.tanh(g)
    return (c_BH, jax.nn.sigmoid(o) * jnp.tanh(c_BH))
  if cell == "gru":
    x_r, x_z, x_n = jnp.split(xw_BG, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(hw_BG + params["b_h"].astype(jnp.float32), 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    return ((1.0 - z) * n + z * h_BH,)
  if cell == "rnn":
    return (jnp.tanh(xw_BG + hw_BG),)
  _check_cell(cell)
  raise AssertionError  # unreachable


# ----------------------------------------------------------------------------- LSTM recurrence


def _lstm_forward(W_h, xw_TBG, c0_BH, h0_BH, live_TB, dtype):
  """The LSTM recurrence over pre-projected inputs; also returns what the backward pass needs.

  Per step the loop writes only the outputs, the activated gates and the new cell state; the
  previous states the backward pass reads are those shifted by one step (see the backward).
  """
  H = W_h.shape[0]
  is_g_G = (jnp.arange(4 * H) >= 2 * H) & (jnp.arange(4 * H) < 3 * H)

  def body(carry, inputs):
    c_BH, h_BH = carry
    xw_BG, live_B = inputs
    z_BG = xw_BG + matmul(h_BH, W_h, dtype)
    # One elementwise pass over all gates (tanh for g, sigmoid for i, f, o): fewer, larger
    # kernels per step than four gate-by-gate passes.
    act_BG = jnp.where(is_g_G, jnp.tanh(z_BG), jax.nn.sigmoid(z_BG))
    i, f, g, o = jnp.split(act_BG, 4, axis=-1)
    c_new = f * c_BH + i * g
    h_new = o * jnp.tanh(c_new)
    live_B1 = live_B[:, None]
    carry = (jnp.where(live_B1, c_new, c_BH), jnp.where(live_B1, h_new, h_BH))
    return carry, (jnp.where(live_B1, h_new, 0.0), act_BG, c_new)

  (c_T, h_T), (out_TBH, gates_TBG, c_new_TBH) = jax.lax.scan(
      body, (c0_BH, h0_BH), (xw_TBG, live_TB))
  # Live steps are a prefix of each row, so at a live step the previous carry is the previous
  # step's new state (or the initial one); at other steps the backward pass does not read it.
  c_prev_TBH = jnp.concatenate([c0_BH[None], c_new_TBH[:-1]], axis=0)
  h_prev_TBH = jnp.concatenate([h0_BH[None], out_TBH[:-1]], axis=0)
  return out_TBH, c_T, h_T, (gates_TBG, c_prev_TBH, h_prev_TBH)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def lstm_recurrence(W_h: jax.Array, xw_TBG: jax.Array, c0_BH: jax.Array, h0_BH: jax.Array,
                    live_TB: jax.Array, dtype: Any = jnp.float32
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """LSTM over time-major projected inputs `xw_TBG` (`project_inputs`): `(outputs_TBH, c_BH,
  h_BH)`. Where `live_TB` is False the carry is frozen and the output is zero; each row's live
  steps must be a prefix (`arange(T) < length`).

  Same math as scanning `cell_step`, with a hand-written backward pass: a reverse scan that
  computes only the gate gradients and the recurrent state gradients, then `dW_h` as one
  [H, T*B] x [T*B, G] product after the loop. Autodiff of the scan would instead accumulate the
  [H, G] weight gradient inside the loop, T small products plus T read-modify-writes of it.
  """
  out_TBH, c_T, h_T, _ = _lstm_forward(W_h, xw_TBG, c0_BH, h0_BH, live_TB, dtype)
  return out_TBH, c_T, h_T


def _lstm_recurrence_fwd(W_h, xw_TBG, c0_BH, h0_BH, live_TB, dtype):
  out_TBH, c_T, h_T, saved = _lstm_forward(W_h, xw_TBG, c0_BH, h0_BH, live_TB, dtype)
  return (out_TBH, c_T, h_T), (W_h, live_TB, saved)


def _lstm_recurrence_bwd(dtype, residuals, cotangents):
  W_h, live_TB, (gates_TBG, c_prev_TBH, h_prev_TBH) = residuals
  dout_TBH, dc_T, dh_T = cotangents
  W_h_t = W_h.T

  def body(carry, inputs):
    dc_BH, dh_BH = carry
    dout_BH, gates_BG, c_prev_BH, live_B = inputs
    live_B1 = live_B[:, None]
    i, f, g, o = jnp.split(gates_BG, 4, axis=-1)
    tanh_c = jnp.tanh(f * c_prev_BH + i * g)
    dh_new = jnp.where(live_B1, dh_BH + dout_BH, 0.0)
    dc_new = jnp.where(live_B1, dc_BH, 0.0) + dh_new * o * (1.0 - tanh_c * tanh_c)
    dz_BG = jnp.concatenate([dc_new * g * i * (1.0 - i), dc_new * c_prev_BH * f * (1.0 - f),
                             dc_new * i * (1.0 - g * g), dh_new * tanh_c * o * (1.0 - o)], axis=-1)
    dh_prev = matmul(dz_BG, W_h_t, dtype) + jnp.where(live_B1, 0.0, dh_BH)
    dc_prev = dc_new * f + jnp.where(live_B1, 0.0, dc_BH)
    return (dc_prev, dh_prev), dz_BG

  (dc0, dh0), dz_TBG = jax.lax.scan(
      body, (dc_T, dh_T), (dout_TBH.astype(jnp.float32), gates_TBG, c_prev_TBH, live_TB),
      reverse=True)
  dW_h = jnp.einsum("tbh,tbg->hg", h_prev_TBH.astype(dtype), dz_TBG.astype(dtype),
                    preferred_element_type=jnp.float32).astype(W_h.dtype)
  return dW_h, dz_TBG.astype(jnp.float32), dc0, dh0, None


lstm_recurrence.defvjp(_lstm_recurrence_fwd, _lstm_recurrence_bwd)


def reverse_padded(x_BT: jax.Array, lengths_B: jax.Array) -> jax.Array:
  """Reverses each sequence within its own length; padding stays where it is.

  `[a b c 0 0]` with length 3 becomes `[c b a 0 0]`. Applying it twice is the identity.
  """
  T = x_BT.shape[1]
  t_T = jnp.arange(T)
  idx_BT = jnp.where(t_T[None, :] < lengths_B[:, None], lengths_B[:, None] - 1 - t_T[None, :],
                     t_T[None, :])
  idx = idx_BT.reshape(idx_BT.shape + (1,) * (x_BT.ndim - 2))
  return jnp.take_along_axis(x_BT, idx, axis=1)


def rnn_layer(
    cell: str,
    params: Params,
    x_BTD: jax.Array,
    lengths_B: jax.Array | None = None,
    carry0: Carry | None = None,
    *,
    reverse: bool = False,
    dtype: Any = jnp.float32,
    unroll: int = 1,
) -> tuple[jax.Array, Carry]:
  """Runs one cell over a batch of sequences.

  Args:
    cell: 'lstm', 'gru' or 'rnn'.
    params: the cell's parameters (`init_cell_params`).
    x_BTD: inputs, padded at the end.
    lengths_B: real length of each sequence; None means every sequence is T long. Past a
      sequence's end its carry is frozen and its outputs are zeros.
    carry0: initial carry (float32); zeros if None.
    reverse: run right to left, starting at each sequence's own last real token (padding never
      enters the backward state). Outputs are returned in the original (left to right) order.
    dtype: compute dtype of the matmuls.
    unroll: `lax.scan` unroll factor. An LSTM with unroll 1 runs `lstm_recurrence` (its own
      backward pass, the fast path on CPU); any other cell or unroll factor runs the generic
      `lax.scan` of `cell_step`. Both compute the same function (tests/test_rnn.py).

  Returns:
    `(outputs_BTH, final_carry)`: outputs in `dtype`; the final carry is the state after each
    sequence's last real token (after its first token when `reverse`).
  """
  _check_cell(cell)
  B, T = x_BTD.shape[:2]
  H = params["W_h"].shape[0]
  if carry0 is None:
    carry0 = zero_carry(cell, B, H)
  if reverse:
    if lengths_B is None:
      x_BTD = x_BTD[:, ::-1]
    else:
      x_BTD = reverse_padded(x_BTD, lengths_B)

  # Hoisted input projection: one [B*T, D] x [D, G] matmul instead of T small ones.
  xw_TBG = project_inputs(params, x_BTD, dtype).swapaxes(0, 1)
  # Cast once outside the loop so the body holds only the recurrent matmul and the gate math.
  rec_params = {k: v.astype(dtype) if k == "W_h" else v for k, v in params.items() if k != "W_i"}

  if cell == "lstm" and unroll == 1:
    live_TB = (jnp.ones((T, B), bool) if lengths_B is None
               else jnp.arange(T)[:, None] < lengths_B[None, :])
    h_TBH, c_BH, h_BH = lstm_recurrence(rec_params["W_h"], xw_TBG, carry0[0].astype(jnp.float32),
                                        carry0[1].astype(jnp.float32), live_TB, dtype)
    final, h_TBH = (c_BH, h_BH), h_TBH.astype(dtype)
  else:
    final, h_TBH = _scan_recurrence(cell, rec_params, xw_TBG, carry0, lengths_B, dtype, unroll)

  h_BTH = h_TBH.swapaxes(0, 1)
  if reverse:
    h_BTH = h_BTH[:, ::-1] if lengths_B is None else reverse_padded(h_BTH, lengths_B)
  return h_BTH, final


def _scan_recurrence(cell: str, rec_params: Params, xw_TBG: jax.Array, carry0: Carry,
                     lengths_B: jax.Array | None, dtype: Any, unroll: int
                     ) -> tuple[Carry, jax.Array]:
  """(final carry, outputs_TBH): `cell_step` under `lax.scan`, any cell and unroll factor.
  Past a sequence's length its carry is frozen and its outputs are zeros."""
  if lengths_B is None:
    def body(carry, xw_BG):
      carry = cell_step(cell, rec_params, carry, xw_BG, dtype)
      return carry, carry[-1].astype(dtype)

    return jax.lax.scan(body, carry0, xw_TBG, unroll=unroll)
  T, B = xw_TBG.shape[:2]
  live_TB = jnp.arange(T)[:, None] < lengths_B[None, :]

  def masked_body(carry, inputs):
    xw_BG, live_B = inputs
    new = cell_step(cell, rec_params, carry, xw_BG, dtype)
    live_B1 = live_B[:, None]
    carry = tuple(jnp.where(live_B1, n, o) for n, o in zip(new, carry, strict=True))
    return carry, jnp.where(live_B1, new[-1], 0.0).astype(dtype)

  return jax.lax.scan(masked_body, carry0, (xw_TBG, live_TB), unroll=unroll)


def stack_frames(x_BTD: jax.Array, lengths_B: jax.Array, factor: int
                 ) -> tuple[jax.Array, jax.Array]:
  """Concatenates every `factor` neighbouring frames: ([B, ceil(T / factor), factor * D],
  ceil(lengths / factor)). Frames past a sequence's length are zeroed first, so the last,
  partly filled group of a sequence reads zeros whatever its padding held (LAS's pyramid step
  when factor is 2; frame stacking with stride at the input)."""
  B, T, D = x_BTD.shape
  live_BT1 = (jnp.arange(T)[None, :] < lengths_B[:, None])[..., None]
  x_BTD = jnp.where(live_BT1, x_BTD, 0)
  padded = -(-T // factor) * factor
  x_BTD = jnp.pad(x_BTD, ((0, 0), (0, padded - T), (0, 0)))
  return x_BTD.reshape(B, padded // factor, factor * D), -(-lengths_B // factor)


def reduced_lengths(lengths_B: jax.Array, factor: int, times: int) -> jax.Array:
  """Lengths after `times` applications of `stack_frames` with `factor`."""
  for _ in range(times):
    lengths_B = -(-lengths_B // factor)
  return lengths_B


def merge_directions(fw: jax.Array, bw: jax.Array, merge: str) -> jax.Array:
  """Combines forward and backward features: concatenation ([..., 2H]) or sum ([..., H])."""
  return jnp.concatenate([fw, bw], axis=-1) if merge == "concat" else fw + bw


def dropout(rng: jax.Array | None, x: jax.Array, rate: float) -> jax.Array:
  """Inverted dropout; the identity when `rng` is None or `rate` is 0 (evaluation)."""
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def rnn_stack(
    cell: str,
    params: dict[str, Any],
    x_BTD: jax.Array,
    lengths_B: jax.Array | None = None,
    carries0: Sequence[Carry] | None = None,
    *,
    bidirectional: bool = False,
    merge: str = "concat",
    residual: bool = False,
    dropout_rate: float = 0.0,
    rng: jax.Array | None = None,
    dtype: Any = jnp.float32,
    unroll: int = 1,
    reduce_factor: int = 1,
) -> tuple[jax.Array, list[Any]]:
  """Runs a stack of layers, each over the whole sequence (layer-major).

  Dropout (with the explicit `rng`; none when it is None) is applied to each layer's input from
  the second layer on. With `residual`, layers from the second on add their input to their output.
  With `reduce_factor` r > 1 the stack is pyramidal (Chan et al. 2016, LAS): each layer from the
  second on reads `stack_frames` of the layer below, r frames at a time, so the top layer has
  ceil(T / r ** (layers - 1)) steps (`reduced_lengths` gives the sequences' lengths there).

  Returns:
    `(outputs_BTO, finals)`: the top layer's outputs (O = `stack_output_size`) and one final
    carry per layer; for bidirectional stacks each entry is a pair `(fw_carry, bw_carry)`.
    `carries0` (unidirectional stacks only) gives each layer's initial carry.
  """
  num_layers = len(params)
  if carries0 is not None and bidirectional:
    raise ValueError("initial carries are only supported for unidirectional stacks")
  if reduce_factor > 1 and (residual or lengths_B is None):
    raise ValueError("a pyramidal stack (reduce_factor > 1) needs lengths and no residual "
                     "connections (a layer's input and output differ in length)")
  rngs = [None] * num_layers if rng is None else list(jax.random.split(rng, num_layers))
  finals = []
  h_BTO = x_BTD
  for i in range(num_layers):
    layer = params[f"layer_{i}"]
    if i > 0 and reduce_factor > 1:
      h_BTO, lengths_B = stack_frames(h_BTO, lengths_B, reduce_factor)
    x_in = dropout(rngs[i], h_BTO, dropout_rate) if i > 0 else h_BTO
    kw = dict(dtype=dtype, unroll=unroll)
    if bidirectional:
      fw_BTH, fw_final = rnn_layer(cell, layer["fw"], x_in, lengths_B, **kw)
      bw_BTH, bw_final = rnn_layer(cell, layer["bw"], x_in, lengths_B, reverse=True, **kw)
      out = merge_directions(fw_BTH, bw_BTH, merge)
      finals.append((fw_final, bw_final))
    else:
      carry0 = None if carries0 is None else carries0[i]
      out, final = rnn_layer(cell, layer, x_in, lengths_B, carry0, **kw)
      finals.append(final)
    h_BTO = out + h_BTO if residual and i > 0 else out
  return h_BTO, finals


def stack_step(
    cell: str,
    params: dict[str, Any],
    carries: Sequence[Carry],
    x_BD: jax.Array,
    *,
    residual: bool = False,
    dropout_rate: float = 0.0,
    rng: jax.Array | None = None,
    dtype: Any = jnp.float32,
) -> tuple[tuple[Carry, ...], jax.Array]:
  """One time step through a unidirectional stack: the per-step twin of `rnn_stack`.

  Returns `(new_carries, h_BH)` with `h_BH` the top layer's new hidden state (in `dtype`).
  """
  num_layers = len(params)
  rngs = [None] * num_layers if rng is None else list(jax.random.split(rng, num_layers))
  new_carries = []
  h_BH = x_BD
  for i in range(num_layers):
    layer = params[f"layer_{i}"]
    x_in = dropout(rngs[i], h_BH, dropout_rate) if i > 0 else h_BH
    carry = cell_step(cell, layer, carries[i], project_inputs(layer, x_in, dtype), dtype)
    new_carries.append(carry)
    out = carry[-1].astype(dtype)
    h_BH = out + h_BH if residual and i > 0 else out
  return tuple(new_carries), h_BH
