"""The fixed reference workload of the speed benchmarks, and what every implementation shares.

Source and target vocabulary 8000, embedding 256, hidden 512, 2-layer LSTM encoder, 2-layer LSTM
decoder whose initial states are the encoder's final states, Luong dot attention without input
feeding, readout tanh(W [h; ctx] + b), output projection, summed cross-entropy / target tokens;
batch 64, source and target length 30 with ~20% padding; Adam (lr 1e-3); float32.

Shape legend: B batch, S source length, T target length, E embedding, H hidden, V vocabulary.
Weights travel between implementations as a flat dict of NumPy arrays named like s2s_jax's
parameter tree ("encoder/layer_0/W_i", ...), with s2s_jax's conventions: `x @ W` matrices
([in, out]), fused LSTM gates in the order i, f, g, o, one bias per gate.
"""

from __future__ import annotations

import numpy as np

VOCAB = 8000
EMBED = 256
HIDDEN = 512
LAYERS = 2
BATCH = 64
LENGTH = 30
LEARNING_RATE = 1e-3
PAD, BOS, EOS = 0, 1, 2


def model_config_kwargs(hidden: int = HIDDEN) -> dict:
  """`s2s_jax.ModelConfig` arguments of the reference model (`hidden` for its large variant)."""
  return dict(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, embed_size=EMBED, hidden_size=hidden,
              encoder_layers=LAYERS, decoder_layers=LAYERS, bidirectional=False,
              attention="luong", attention_score="dot", input_feeding=False, dropout=0.0)


def make_batch(seed: int = 0, batch_size: int = BATCH) -> dict[str, np.ndarray]:
  """src [B, S], tgt_in / tgt_out [B, T] int32: lengths uniform in 18..30 (~20% padding)."""
  rng = np.random.default_rng(seed)
  batch = {k: np.zeros((batch_size, LENGTH), np.int32) for k in ("src", "tgt_in", "tgt_out")}
  for row in range(batch_size):
    n_src, n_tgt = rng.integers(18, LENGTH + 1, 2)
    batch["src"][row, :n_src - 1] = rng.integers(4, VOCAB, n_src - 1)
    batch["src"][row, n_src - 1] = EOS
    tgt = rng.integers(4, VOCAB, n_tgt - 1)
    batch["tgt_in"][row, 0] = BOS
    batch["tgt_in"][row, 1:n_tgt] = tgt
    batch["tgt_out"][row, :n_tgt - 1] = tgt
    batch["tgt_out"][row, n_tgt - 1] = EOS
  return batch


def train_flops() -> float:
  """Matmul FLOPs of one training step (forward + backward = 3x forward), padding included
  (every implementation computes on padded positions), embeddings and elementwise math not."""
  B, S, T, E, H, V = BATCH, LENGTH, LENGTH, EMBED, HIDDEN, VOCAB
  lstm = lambda steps, d: 2 * B * steps * (d * 4 * H + H * 4 * H)  # noqa: E731
  forward = (lstm(S, E) + (LAYERS - 1) * lstm(S, H) + lstm(T, E) + (LAYERS - 1) * lstm(T, H)
             + 2 * 2 * B * T * S * H  # attention scores and context
             + 2 * B * T * 2 * H * H  # readout
             + 2 * B * T * H * V)  # output projection
  return 3.0 * forward


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(flatten(value, name + "/"))
    else:
      out[name] = np.asarray(value)
  return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree
