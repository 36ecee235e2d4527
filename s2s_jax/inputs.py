"""The run's inputs from the config's `data` section: the dataset opened, the tokenizers trained
(or loaded from the workdir), and the grain pipelines for training and evaluation."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from s2s_jax import data as data_lib

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Inputs:
  source_tokenizer: data_lib.Tokenizer
  target_tokenizer: data_lib.Tokenizer
  train: data_lib.Pipeline
  evals: dict[str, tuple[data_lib.Pipeline, list[list[str]]]]  # split -> (batches, references)


def prepare_inputs(cfg: Mapping[str, Any], workdir: str, batch_multiple: int) -> Inputs:
  """Opens the dataset, trains or loads the tokenizers, and builds the pipelines.

  With several processes, process 0 prepares the dataset and trains the tokenizers first and
  the others then read what it wrote (a shared data_dir and workdir are assumed).
  """
  opened = _open_and_tokenize(cfg, workdir) if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("s2s_jax: data prepared")
  dataset, sources, targets, src_tok, tgt_tok = opened or _open_and_tokenize(cfg, workdir)

  def tokenized(srcs, tgts):
    return data_lib.TokenizedSplit.build(zip(srcs, tgts, strict=True), src_tok, tgt_tok)

  buckets = tuple(cfg["bucket_lengths"])
  train = data_lib.Pipeline(tokenized(sources, targets), data_lib.BatchingConfig(
      max_tokens=cfg["max_tokens"], bucket_lengths=buckets,
      max_source_length=cfg["max_source_length"] or None,
      max_target_length=cfg["max_target_length"] or None, batch_multiple=batch_multiple),
      shuffle=True, seed=cfg["seed"], name=cfg["train_split"])
  evals = {}
  for split in (cfg["eval_split"], cfg["test_split"]):
    if split and split not in evals:
      pairs = dataset.split(split)
      data = tokenized(*pairs.columns(desc=f"reading {split} split"))
      # Evaluation never drops an example: one more bucket holds the longest, if need be.
      longest = int(max(np.diff(data.src_offsets).max() + 1, np.diff(data.tgt_offsets).max() + 1))
      lengths = buckets if longest <= buckets[-1] else (*buckets, -(-longest // 8) * 8)
      max_tokens = max(cfg["eval_max_tokens"], lengths[-1] * batch_multiple)
      pipeline = data_lib.Pipeline(
          data, data_lib.BatchingConfig(max_tokens=max_tokens, bucket_lengths=lengths,
                                        batch_multiple=batch_multiple),
          shuffle=False, num_epochs=1, name=split)
      evals[split] = (pipeline, pairs.all_references())
  return Inputs(src_tok, tgt_tok, train, evals)


def _open_and_tokenize(cfg, workdir):
  dataset = data_lib.open_dataset(cfg["dataset"], data_dir=cfg["data_dir"] or None,
                                  options=dict(cfg["options"]))
  for split, skipped in dataset.skipped.items():
    if skipped:
      log.warning("%s: %d bad lines were skipped while preparing: %s", split,
                  sum(skipped.values()), dict(skipped))
  if cfg.get("train_tsv"):  # e.g. a teacher's outputs (sequence-level distillation)
    from s2s_jax.data import parallel_text
    rows = list(parallel_text.read_tsv(cfg["train_tsv"]))
    sources, targets = [r[1] for r in rows], [r[2] for r in rows]
    log.info("training on %d pairs of %s instead of the %s split", len(rows),
             cfg["train_tsv"], cfg["train_split"])
  else:
    sources, targets = dataset.split(cfg["train_split"]).columns(desc="reading train split")
  src_tok, tgt_tok = data_lib.get_or_train_tokenizers(
      os.path.join(workdir, "tokenizers"),
      data_lib.TokenizerSpec.from_dict(cfg["source_tokenizer"]),
      data_lib.TokenizerSpec.from_dict(cfg["target_tokenizer"]), sources, targets,
      shared=cfg["shared_vocab"])
  return dataset, sources, targets, src_tok, tgt_tok
