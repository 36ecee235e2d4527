"""The run's inputs from the config's `data` section: the dataset opened, the tokenizers trained
(or loaded from the workdir), and the grain pipelines for training and evaluation.

A speech dataset (its source is audio: `Dataset.sample_rate`) has no source tokenizer; its
pipelines are `AudioPipeline`s whose `bucket_lengths`, `max_tokens` and `max_source_length` count
feature frames (10 ms each) and whose `max_target_length` is every batch's padded target length.
"""

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
  source_tokenizer: data_lib.Tokenizer | None  # None for audio
  target_tokenizer: data_lib.Tokenizer
  train: data_lib.Pipeline
  evals: dict[str, tuple[data_lib.Pipeline, list[list[str]]]]  # split -> (batches, references)
  sample_rate: int | None = None  # Hz of a speech dataset's audio; None for text

  @property
  def source_vocab_size(self) -> int:
    """The source vocabulary's size (0 for audio, which has none)."""
    return 0 if self.source_tokenizer is None else self.source_tokenizer.vocab_size


def prepare_inputs(cfg: Mapping[str, Any], workdir: str, batch_multiple: int,
                   copy_slots: int = 0) -> Inputs:
  """Opens the dataset, trains or loads the tokenizers, and builds the pipelines; `copy_slots`
  is the model's `copy_oov_slots` (the extended vocabulary: `data.extended_vocab`).

  With several processes, process 0 prepares the dataset and trains the tokenizers first and
  the others then read what it wrote (a shared data_dir and workdir are assumed).
  """
  opened = _open_and_tokenize(cfg, workdir) if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("s2s_jax: data prepared")
  dataset, sources, targets, src_tok, tgt_tok = opened or _open_and_tokenize(cfg, workdir)
  if dataset.sample_rate:
    return _audio_inputs(cfg, dataset, sources, targets, tgt_tok, batch_multiple)

  def tokenized(srcs, tgts):
    return data_lib.TokenizedSplit.build(zip(srcs, tgts, strict=True), src_tok, tgt_tok,
                                         copy_slots)

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


def _audio_inputs(cfg, dataset, audio, texts, tgt_tok, batch_multiple) -> Inputs:
  """Inputs of a speech dataset: `AudioPipeline`s bucketed by frame count."""
  from s2s_jax import features
  from s2s_jax.data import audio as audio_lib

  if not cfg["max_target_length"]:
    raise ValueError(f"data.max_target_length must be set for the speech dataset "
                     f"{cfg['dataset']!r}: the padded target length of every batch (e.g. 32 "
                     "characters for spoken words; longer transcripts are dropped and counted)")
  frontend = features.FeatureConfig(sample_rate=dataset.sample_rate)
  framing = dict(frame_length=frontend.frame_length, hop_length=frontend.hop_length)
  buckets = tuple(cfg["bucket_lengths"])
  train = audio_lib.AudioPipeline(
      audio_lib.audio_split(zip(audio, texts, strict=True), tgt_tok),
      data_lib.BatchingConfig(
          max_tokens=cfg["max_tokens"], bucket_lengths=buckets,
          max_source_length=cfg["max_source_length"] or None,
          max_target_length=cfg["max_target_length"], batch_multiple=batch_multiple),
      shuffle=True, seed=cfg["seed"], name=cfg["train_split"], **framing)
  evals = {}
  for split in (cfg["eval_split"], cfg["test_split"]):
    if split and split not in evals:
      audio, texts = dataset.split(split).columns(desc=f"reading {split} split")
      data = audio_lib.audio_split(zip(audio, texts, strict=True), tgt_tok)
      # Evaluation never drops an utterance: a longer bucket and target length if need be.
      frames = int(train.frames(np.diff(data.src_offsets)).max())
      targets = -(-int(np.diff(data.tgt_offsets).max() + 1) // 8) * 8
      need = max(frames, targets)
      lengths = buckets if need <= buckets[-1] else (*buckets, -(-need // 8) * 8)
      max_tokens = max(cfg["eval_max_tokens"], lengths[-1] * batch_multiple)
      pipeline = audio_lib.AudioPipeline(
          data, data_lib.BatchingConfig(max_tokens=max_tokens, bucket_lengths=lengths,
                                        max_target_length=targets,
                                        batch_multiple=batch_multiple),
          shuffle=False, num_epochs=1, name=split, **framing)
      evals[split] = (pipeline, [[t] for t in texts])
  return Inputs(None, tgt_tok, train, evals, sample_rate=dataset.sample_rate)


def _open_and_tokenize(cfg, workdir):
  dataset = data_lib.open_dataset(cfg["dataset"], data_dir=cfg["data_dir"] or None,
                                  options=dict(cfg["options"]))
  for split, skipped in dataset.skipped.items():
    if skipped:
      log.warning("%s: %d bad lines were skipped while preparing: %s", split,
                  sum(skipped.values()), dict(skipped))
  if dataset.sample_rate:
    return _open_speech(cfg, workdir, dataset)
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


def _open_speech(cfg, workdir, dataset):
  """A speech dataset's train split and target tokenizer (its source, audio, has none)."""
  name = cfg["dataset"]
  if cfg["source_tokenizer"]:
    raise ValueError(f"dataset {name!r} is speech: its source is audio, which has no tokenizer; "
                     "set data.source_tokenizer to None (configs/asr_words.py does)")
  for field in ("train_tsv", "shared_vocab"):
    if cfg.get(field):
      raise ValueError(f"data.{field} needs a text source; dataset {name!r} is speech")
  audio, texts = dataset.split(cfg["train_split"]).columns(desc="reading train split")
  _, tgt_tok = data_lib.get_or_train_tokenizers(
      os.path.join(workdir, "tokenizers"), None,
      data_lib.TokenizerSpec.from_dict(cfg["target_tokenizer"]), (), texts)
  return dataset, audio, texts, None, tgt_tok
