"""The reference workload built from Flax's own recurrent layers: `flax.linen.RNN` over
`flax.linen.OptimizedLSTMCell`. A benchmark peer for s2s_jax's scan core.

Shape legend: B batch, S source length, T target length, H hidden, V vocabulary.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import workload as w

GATES = ("i", "f", "g", "o")


class FlaxRNNSeq2Seq(nn.Module):
  @nn.compact
  def __call__(self, src_BS, tgt_in_BT):
    mask_BS = src_BS != w.PAD
    x = nn.Embed(w.VOCAB, w.EMBED, name="src_embedding")(src_BS)
    finals = []
    for k in range(w.LAYERS):
      cell = nn.OptimizedLSTMCell(w.HIDDEN, name=f"encoder_{k}")
      carry, x = nn.RNN(cell, return_carry=True)(x, seq_lengths=mask_BS.sum(1))
      finals.append(carry)
    memory_BSH = jnp.where(mask_BS[..., None], x, 0.0)
    y = nn.Embed(w.VOCAB, w.EMBED, name="tgt_embedding")(tgt_in_BT)
    for k in range(w.LAYERS):
      cell = nn.OptimizedLSTMCell(w.HIDDEN, name=f"decoder_{k}")
      y = nn.RNN(cell)(y, initial_carry=finals[k])
    scores = jnp.einsum("bth,bsh->bts", y, memory_BSH)
    weights = jax.nn.softmax(jnp.where(mask_BS[:, None, :], scores, -jnp.inf), axis=-1)
    context = jnp.einsum("bts,bsh->bth", weights, memory_BSH)
    r = jnp.tanh(nn.Dense(w.HIDDEN, name="readout")(jnp.concatenate([y, context], -1)))
    return nn.Dense(w.VOCAB, name="output")(r)


def params_from_flat(flat: dict[str, np.ndarray]) -> dict:
  """s2s_jax-layout weights (see workload.py) as this module's parameter tree."""
  H = w.HIDDEN
  params = {"src_embedding": {"embedding": flat["src_embedding"]},
            "tgt_embedding": {"embedding": flat["tgt_embedding"]},
            "readout": {"kernel": flat["readout/W"], "bias": flat["readout/b"]},
            "output": {"kernel": flat["output/W"], "bias": flat["output/b"]}}
  for side in ("encoder", "decoder"):
    for k in range(w.LAYERS):
      W_i, W_h, b = (flat[f"{side}/layer_{k}/{n}"] for n in ("W_i", "W_h", "b_i"))
      cell = {}
      for g, gate in enumerate(GATES):
        cols = slice(g * H, (g + 1) * H)
        cell[f"i{gate}"] = {"kernel": W_i[:, cols]}
        cell[f"h{gate}"] = {"kernel": W_h[:, cols], "bias": b[cols]}
      params[f"{side}_{k}"] = cell
  return params
