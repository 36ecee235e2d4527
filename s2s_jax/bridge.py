"""The bridge: the decoder's initial state from the encoder's final states (`ModelConfig.bridge`).

  copy      each encoder layer's merged final state is the same decoder layer's initial state
            (equal layer counts and sizes);
  project   each decoder layer's state component = tanh(W [that component of every encoder
            layer, concatenated] + b);
  zero      zeros.
`ModelConfig.resolved_bridge` turns 'auto' into 'copy' when it can and 'project' otherwise.
Pure functions; the model calls them (`s2s_jax.model`).

Shape legend: B batch, X the encoder layers' concatenated state size, Y the decoder's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from s2s_jax import rnn
from s2s_jax.model_config import ModelConfig


def init(rng: jax.Array, cfg: ModelConfig, param_dtype: Any) -> dict:
  """The 'project' bridge's parameters: one dense layer per state component (LSTM: h and c)."""
  num_states = 2 if cfg.cell == "lstm" else 1
  in_size = cfg.encoder_layers * cfg.memory_size
  out_size = cfg.decoder_layers * cfg.hidden_size
  return {f"state_{k}": rnn.dense_init(key, in_size, out_size, param_dtype)
          for k, key in enumerate(jax.random.split(rng, num_states))}


def initial_states(p: Mapping[str, Any], cfg: ModelConfig, finals: list[rnn.Carry]
                   ) -> tuple[rnn.Carry, ...]:
  """The decoder layers' initial carries from the encoder layers' merged final ones."""
  B = finals[0][-1].shape[0]
  mode = cfg.resolved_bridge
  if mode == "zero":
    return tuple(rnn.zero_carry(cfg.cell, B, cfg.hidden_size) for _ in range(cfg.decoder_layers))
  if mode == "copy":
    return tuple(finals)
  per_component = []
  for k in range(len(finals[0])):
    dense = p["bridge"][f"state_{k}"]
    src_BX = jnp.concatenate([f[k] for f in finals], axis=-1)
    out_BY = jnp.tanh(rnn.matmul(src_BX, dense["W"], cfg.compute_dtype)
                      + dense["b"].astype(jnp.float32))
    per_component.append(jnp.split(out_BY, cfg.decoder_layers, axis=-1))
  return tuple(tuple(comp[layer] for comp in per_component)
               for layer in range(cfg.decoder_layers))
