"""Figures: a run's learning curves and an attention heatmap (PNG files, matplotlib's Agg)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np


def _pyplot():
  import matplotlib  # imported on first use: decoding and training never need it otherwise
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def learning_curves(metrics_path: str, out_path: str, metric: str) -> None:
  """Train / validation loss and the validation task metric against steps."""
  plt = _pyplot()
  with open(metrics_path) as f:
    rows = [json.loads(line) for line in f]
  fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
  for key, label in (("train_loss", "train loss"), ("eval_loss", "validation loss")):
    points = [(r["step"], r[key]) for r in rows if key in r]
    if points:
      ax_loss.plot(*zip(*points, strict=True), label=label)
  points = [(r["step"], r[f"eval_{metric}"]) for r in rows if f"eval_{metric}" in r]
  if points:
    ax_metric.plot(*zip(*points, strict=True), marker="o")
  ax_loss.set(xlabel="step", ylabel="cross-entropy per token")
  ax_loss.legend()
  ax_metric.set(xlabel="step", ylabel=f"validation {metric}")
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)


def attention_heatmap(weights: np.ndarray, src_pieces: Sequence[str], out_pieces: Sequence[str],
                      path: str, xlabel: str = "source") -> str:
  """Writes attention weights [output tokens, source tokens] as a heatmap (source across,
  output down) to `path`; returns `path`. Long sources (e.g. audio frames) get a capped width
  and every k-th label."""
  plt = _pyplot()
  width = min(1.0 + 0.45 * len(src_pieces), 14.0)
  fig, ax = plt.subplots(figsize=(width, 1.0 + 0.4 * len(out_pieces)))
  image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
  every = max(1, -(-len(src_pieces) // 30))
  ticks = range(0, len(src_pieces), every)
  labels = [src_pieces[k] for k in ticks]
  ax.set_xticks(ticks, labels, rotation=90 if any(len(p) > 2 for p in labels) else 0)
  ax.set_yticks(range(len(out_pieces)), out_pieces)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("output")
  ax.xaxis.set_label_position("top")
  ax.xaxis.tick_top()
  fig.colorbar(image, ax=ax, fraction=0.05)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
