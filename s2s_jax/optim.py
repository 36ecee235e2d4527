"""Optimizers and learning-rate schedules from the config's `optimizer` section.

The optimizer returns update directions at unit learning rate; `training.train_step` multiplies
them by `schedule(update) * lr_scale`, which lets the loop lower the rate on plateaus without
touching the optimizer state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "adamw", "sgd", "adafactor")
SCHEDULES = ("constant", "warmup_rsqrt", "warmup_cosine")


def make_schedule(cfg: Mapping[str, Any], num_updates: int) -> optax.Schedule:
  """The learning rate as a function of the update count."""
  lr, warmup = cfg["learning_rate"], max(int(cfg["warmup_steps"]), 1)
  name = cfg["schedule"]
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "warmup_rsqrt":  # linear warmup, then lr * sqrt(warmup / step)
    return lambda s: lr * jnp.minimum((s + 1) / warmup, jnp.sqrt(warmup / jnp.maximum(s + 1, 1)))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(num_updates, warmup + 1),
                                              end_value=cfg["final_learning_rate"])
  raise ValueError(f"optimizer.schedule={name!r} is invalid; allowed values: {SCHEDULES}")


def make_optimizer(cfg: Mapping[str, Any]) -> optax.GradientTransformation:
  """Clipping + the update direction at unit learning rate (the step multiplies by the rate).

  optax's adam / adamw / sgd / adafactor are linear in their learning rate, so scaling their
  unit-rate updates by `schedule * lr_scale` equals running them with that rate. Gradient
  accumulation wraps the whole thing in `optax.MultiSteps`.
  """
  name = cfg["name"]
  if name == "adam":
    direction = optax.adam(1.0)
  elif name == "adamw":
    direction = optax.adamw(1.0, weight_decay=cfg["weight_decay"])
  elif name == "sgd":
    direction = optax.sgd(1.0, momentum=cfg["momentum"] or None)
  elif name == "adafactor":
    direction = optax.adafactor(1.0)
  else:
    raise ValueError(f"optimizer.name={name!r} is invalid; allowed values: {OPTIMIZERS}")
  if cfg["clip_norm"]:
    direction = optax.chain(optax.clip_by_global_norm(cfg["clip_norm"]), direction)
  if cfg["accumulate_steps"] > 1:
    direction = optax.MultiSteps(direction, every_k_schedule=cfg["accumulate_steps"])
  return direction
