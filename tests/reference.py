"""Independent NumPy (float64) references written from the textbook equations.

They share nothing with `s2s_jax` except the documented parameter layout (gate order in the fused
matrices), and loop over time one sequence at a time, so padding cannot enter them.
"""

import numpy as np


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _gates(W, n):
  """Splits a fused [*, n*H] matrix into its n gate blocks."""
  H = W.shape[-1] // n
  return [W[..., k * H:(k + 1) * H] for k in range(n)]


def lstm_sequence(p, x_TD, h0, c0):
  """Outputs [T, H] and final (c, h) of one unpadded sequence, classic LSTM equations."""
  Wi, Wf, Wg, Wo = _gates(p["W_i"], 4)
  Ui, Uf, Ug, Uo = _gates(p["W_h"], 4)
  bi, bf, bg, bo = _gates(p["b_i"], 4)
  h, c, outs = h0, c0, []
  for x in x_TD:
    i = sigmoid(x @ Wi + h @ Ui + bi)
    f = sigmoid(x @ Wf + h @ Uf + bf)
    g = np.tanh(x @ Wg + h @ Ug + bg)
    o = sigmoid(x @ Wo + h @ Uo + bo)
    c = f * c + i * g
    h = o * np.tanh(c)
    outs.append(h)
  return np.array(outs).reshape(len(x_TD), len(h0)), (c, h)


def gru_sequence(p, x_TD, h0):
  """GRU with the reset gate applied to the recurrent product (cuDNN / PyTorch form)."""
  Wr, Wz, Wn = _gates(p["W_i"], 3)
  Ur, Uz, Un = _gates(p["W_h"], 3)
  br, bz, bn = _gates(p["b_i"], 3)
  cr, cz, cn = _gates(p["b_h"], 3)
  h, outs = h0, []
  for x in x_TD:
    r = sigmoid(x @ Wr + br + h @ Ur + cr)
    z = sigmoid(x @ Wz + bz + h @ Uz + cz)
    n = np.tanh(x @ Wn + bn + r * (h @ Un + cn))
    h = (1 - z) * n + z * h
    outs.append(h)
  return np.array(outs).reshape(len(x_TD), len(h0)), (h,)


def elman_sequence(p, x_TD, h0):
  h, outs = h0, []
  for x in x_TD:
    h = np.tanh(x @ p["W_i"] + p["b_i"] + h @ p["W_h"])
    outs.append(h)
  return np.array(outs).reshape(len(x_TD), len(h0)), (h,)


def run_sequence(cell, p, x_TD, reverse=False):
  """Reference for one unpadded sequence from a zero state; outputs in input order."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  x_TD = np.asarray(x_TD, np.float64)
  H = p["W_h"].shape[0]
  zeros = np.zeros(H)
  xs = x_TD[::-1] if reverse else x_TD
  if cell == "lstm":
    outs, final = lstm_sequence(p, xs, zeros, zeros)
  elif cell == "gru":
    outs, final = gru_sequence(p, xs, zeros)
  else:
    outs, final = elman_sequence(p, xs, zeros)
  return (outs[::-1] if reverse else outs), final


def log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(axis=-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
