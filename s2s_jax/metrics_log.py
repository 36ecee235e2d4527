"""A run's metrics: `metrics.jsonl` (one JSON object per logged step) and TensorBoard event files
(`plots.learning_curves` draws the JSON lines at the end of a run)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import jax


class MetricsLog:
  """metrics.jsonl + TensorBoard, written by process 0; resuming drops lines past the step."""

  def __init__(self, workdir: str, resume_step: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if not self.enabled:
      return
    if os.path.exists(self.path):  # a killed run may have logged steps after its checkpoint
      with open(self.path) as f:
        kept = [line for line in f if _logged_step(line) <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(kept)
    import tensorboardX
    self.writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, values: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, **values}) + "\n")
    for key, value in values.items():
      self.writer.add_scalar(key, value, step)
    self.writer.flush()

  def close(self) -> None:
    if self.enabled:
      self.writer.close()


def _logged_step(line: str) -> float:
  """The step of a metrics.jsonl line; inf for a line cut short by a kill (then dropped)."""
  try:
    return json.loads(line)["step"]
  except (json.JSONDecodeError, KeyError):
    return math.inf
