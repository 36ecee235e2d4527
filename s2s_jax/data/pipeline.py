"""The input pipeline: tokenize once, filter by length, bucket, and batch by tokens with grain.

Shape legend: B rows of a batch (this host's), S source length, T target length, N examples.

1. `TokenizedSplit.build` reads a split once and keeps its token ids in flat arrays (about 2 bytes
   per token with offsets; ids are uint16 when the vocabulary allows). Source ids get EOS
   appended (`BatchingConfig.source_eos`); targets become `tgt_in` = [BOS, y...] and
   `tgt_out` = [y..., EOS].
2. `Pipeline` drops examples longer than the limits (counted per reason in `stats`, and logged),
   then puts each example in the smallest bucket whose length L fits both sides. A bucket's
   batches are [rows_L, L] with rows_L = max_tokens // L rounded down to `batch_multiple`, so a
   batch holds at most `max_tokens` (padded) tokens per side and jit sees one shape per bucket.
3. Every epoch, with its own seed-derived permutation, each bucket's examples are cut into
   batches (the last one padded with empty rows, index -1) and the batches are shuffled, so each
   example appears exactly once per epoch. Every host computes the same global plan and loads
   only its share of the rows: rows [p * B, (p + 1) * B) of each global batch for process p.
4. grain runs it: a `MapDataset` over (epoch, batch) positions mapped to numpy batches, with
   prefetch threads and optional worker processes. The iterator's `get_state()` is a small dict;
   `set_state()` resumes at exactly the next batch.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Iterable, Sequence

import grain
import jax
import numpy as np
from absl import flags

from s2s_jax.data import extended_vocab
from s2s_jax.data.tokenizers import Tokenizer
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
  """How examples become batches.

  max_tokens: padded tokens per side of a global batch (all hosts): rows * L <= max_tokens.
  bucket_lengths: the padded lengths L (ascending); an example goes to the smallest L that holds
    source (with EOS) and target (with BOS/EOS shift, i.e. len + 1).
  max_source_length / max_target_length: longer examples are dropped and counted; None means
    the largest bucket length (nothing longer can be batched).
  batch_multiple: rows of every batch are a multiple of this (the global device count), and of
    the process count.
  source_eos: append EOS to source ids.
  """

  max_tokens: int = 4096
  bucket_lengths: tuple[int, ...] = (8, 12, 16, 24, 32, 48, 64, 96, 128)
  max_source_length: int | None = None
  max_target_length: int | None = None
  batch_multiple: int = 1
  source_eos: bool = True

  def __post_init__(self):
    lengths = tuple(int(x) for x in self.bucket_lengths)
    object.__setattr__(self, "bucket_lengths", lengths)
    if not lengths or any(x <= 0 for x in lengths) or list(lengths) != sorted(set(lengths)):
      raise ValueError(f"BatchingConfig.bucket_lengths={lengths} must be positive and ascending")
    if self.batch_multiple < 1:
      raise ValueError(f"BatchingConfig.batch_multiple={self.batch_multiple} must be >= 1")
    for name in ("max_source_length", "max_target_length"):
      value = getattr(self, name)
      if value is not None and not 1 <= value <= lengths[-1]:
        raise ValueError(f"BatchingConfig.{name}={value} must be in [1, {lengths[-1]}] (the "
                         "largest bucket length); add a longer bucket to allow longer examples")
    if self.max_tokens < lengths[-1] * self.batch_multiple:
      raise ValueError(
          f"BatchingConfig.max_tokens={self.max_tokens} is too small: the largest bucket "
          f"({lengths[-1]}) needs at least {lengths[-1] * self.batch_multiple} tokens for "
          f"batch_multiple={self.batch_multiple} rows")

  def rows(self, length: int) -> int:
    """Global rows of a batch in the bucket of padded length `length`."""
    return self.max_tokens // length // self.batch_multiple * self.batch_multiple


@dataclasses.dataclass(frozen=True)
class TokenizedSplit:
  """A split's token ids: example i's source is `src_ids[src_offsets[i]:src_offsets[i + 1]]`.
  For speech (`audio.audio_split`), the source "ids" are the utterance's int16 samples."""

  src_ids: np.ndarray
  src_offsets: np.ndarray  # [N + 1]
  tgt_ids: np.ndarray
  tgt_offsets: np.ndarray  # [N + 1]
  # With copy_slots: each source's tokens outside the vocabulary that have extra ids
  # (`extended_vocab`), in id order; () otherwise.
  oovs: tuple[tuple[str, ...], ...] = ()

  @classmethod
  def build(cls, pairs: Iterable[tuple[str, str]], source: Tokenizer, target: Tokenizer,
            copy_slots: int = 0) -> TokenizedSplit:
    """Tokenizes every (source, target) pair, e.g. a `datasets.TextPairs`, in order; with
    `copy_slots` > 0 (copy attention's extended vocabulary; one shared tokenizer), each
    source's first `copy_slots` distinct unknown tokens get extra ids, on both sides."""
    src, tgt, oovs = [], [], []
    for source_text, target_text in pairs:
      if copy_slots:
        ids, found = extended_vocab.extend_source(source, source_text, copy_slots)
        src.append(ids)
        tgt.append(extended_vocab.extend_target(target, target_text, found))
        oovs.append(found)
      else:
        src.append(source.encode(source_text))
        tgt.append(target.encode(target_text))
    largest = max(source.vocab_size, target.vocab_size) + copy_slots
    dtype = np.uint16 if largest <= 1 << 16 else np.int32
    return cls(*flatten(src, dtype), *flatten(tgt, dtype), tuple(oovs))

  def __len__(self) -> int:
    return len(self.src_offsets) - 1

  def source(self, i: int) -> np.ndarray:
    return self.src_ids[self.src_offsets[i]:self.src_offsets[i + 1]]

  def target(self, i: int) -> np.ndarray:
    return self.tgt_ids[self.tgt_offsets[i]:self.tgt_offsets[i + 1]]


def put_target(batch: Batch, row: int, tgt: np.ndarray) -> None:
  """Writes a target's ids into a batch row: tgt_in = BOS + ids, tgt_out = ids + EOS."""
  batch["tgt_in"][row, 0] = BOS_ID
  batch["tgt_in"][row, 1:len(tgt) + 1] = tgt
  batch["tgt_out"][row, :len(tgt)] = tgt
  batch["tgt_out"][row, len(tgt)] = EOS_ID


def flatten(seqs: Sequence[Sequence[int]], dtype) -> tuple[np.ndarray, np.ndarray]:
  """(the sequences concatenated, offsets [N + 1]): sequence i is flat[offsets[i]:offsets[i+1]]."""
  offsets = np.zeros(len(seqs) + 1, np.int64)
  np.cumsum([len(s) for s in seqs], out=offsets[1:])
  flat = np.concatenate([np.asarray(s, dtype) for s in seqs]) if seqs else np.zeros(0, dtype)
  return flat, offsets


@dataclasses.dataclass(frozen=True)
class PipelineStats:
  """What the length filter and bucketing did to one split."""

  num_examples: int
  num_kept: int
  dropped: dict[str, int]  # reason -> examples
  bucket_examples: dict[int, int]  # bucket length -> kept examples
  batches_per_epoch: int
  real_tokens: int  # source + target tokens (with EOS/BOS) of kept examples
  padded_tokens: int  # source + target positions of one epoch's batches

  def summary(self) -> str:
    dropped = ", ".join(f"{n} {why}" for why, n in self.dropped.items()) or "none"
    return (f"{self.num_kept}/{self.num_examples} examples kept (dropped: {dropped}); "
            f"{self.batches_per_epoch} batches per epoch; buckets {self.bucket_examples}; "
            f"padding {1 - self.real_tokens / max(self.padded_tokens, 1):.1%} of tokens")


class Pipeline:
  """Bucketed, token-based batches of one split; see the module docstring.

  Each batch is a dict of int32 arrays for this host's rows:
    src [B, L] (EOS-terminated ids, PAD after), tgt_in [B, L] (BOS + ids), tgt_out [B, L]
    (ids + EOS), index [B] (the example's index in the split; -1 for an empty padding row).
  """

  def __init__(self, data: TokenizedSplit, config: BatchingConfig, *, shuffle: bool,
               seed: int = 0, num_epochs: int | None = None, name: str = "data",
               process_index: int | None = None, process_count: int | None = None):
    self.data, self.config, self.shuffle, self.seed = data, config, shuffle, seed
    self.num_epochs, self.name = num_epochs, name
    self._plans: dict[int, list[tuple[int, np.ndarray]]] = {}
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    if config.batch_multiple % self.process_count:
      raise ValueError(f"BatchingConfig.batch_multiple={config.batch_multiple} must be a multiple "
                       f"of the process count {self.process_count}")
    if not 0 <= self.process_index < self.process_count:
      raise ValueError(f"process_index={self.process_index} not in [0, {self.process_count})")

    src_len, tgt_len, bucket_len = self._lengths()
    lengths = config.bucket_lengths
    max_src = config.max_source_length or lengths[-1]
    max_tgt = config.max_target_length or lengths[-1]
    too_long_src = src_len > max_src
    too_long_tgt = ~too_long_src & (tgt_len > max_tgt)
    keep = ~(too_long_src | too_long_tgt)
    bucket = np.searchsorted(np.asarray(lengths), bucket_len)
    self._members = [np.flatnonzero(keep & (bucket == b)) for b in range(len(lengths))]
    dropped = {f"source longer than {max_src}": int(too_long_src.sum()),
               f"target longer than {max_tgt}": int(too_long_tgt.sum())}
    batches = [-(-len(m) // config.rows(L)) for m, L in zip(self._members, lengths, strict=True)]
    self.batches_per_epoch = sum(batches)
    self.stats = PipelineStats(
        num_examples=len(data), num_kept=int(keep.sum()),
        dropped={why: n for why, n in dropped.items() if n},
        bucket_examples={L: len(m) for m, L in zip(self._members, lengths, strict=True) if len(m)},
        batches_per_epoch=self.batches_per_epoch,
        real_tokens=int(src_len[keep].sum() + tgt_len[keep].sum()),
        padded_tokens=sum(n * config.rows(L) * self._row_positions(L)
                          for n, L in zip(batches, lengths, strict=True)))
    report = log.warning if self.stats.dropped else log.info
    report("%s: %s", name, self.stats.summary())
    if self.batches_per_epoch == 0:
      raise ValueError(f"{name}: no example fits the length limits ({self.stats.summary()})")

  def _lengths(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per example: (source length, target length, the length its bucket must hold). Source and
    target share the bucket's padded length here: the larger of the two picks it."""
    src_len = np.diff(self.data.src_offsets) + int(self.config.source_eos)
    tgt_len = np.diff(self.data.tgt_offsets) + 1
    return src_len, tgt_len, np.maximum(src_len, tgt_len)

  def _row_positions(self, length: int) -> int:
    """Source + target positions of one row of a bucket of `length`: both sides padded to it."""
    return 2 * length

  @property
  def bucket_shapes(self) -> list[tuple[int, int]]:
    """The (rows, length) of this host's batches, one per bucket length."""
    return [(self.config.rows(L) // self.process_count, L) for L in self.config.bucket_lengths]

  def epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """Epoch `epoch`'s global batches as (bucket index, example indices), in order."""
    rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
    plan = []
    for b, members in enumerate(self._members):
      rows = self.config.rows(self.config.bucket_lengths[b])
      members = rng.permutation(members) if rng is not None else members
      plan.extend((b, members[i:i + rows]) for i in range(0, len(members), rows))
    if rng is not None:
      plan = [plan[k] for k in rng.permutation(len(plan))]
    return plan

  def dataset(self) -> grain.MapDataset:
    """Random access over the batches of all epochs (infinite when num_epochs is None)."""
    return grain.MapDataset.source(_Positions(self)).map(self._load)

  def iterator(self, *, num_threads: int = 2, prefetch: int = 8, num_workers: int = 0
               ) -> grain.DatasetIterator:
    """An iterator over batches; `get_state()` / `set_state()` save and restore its position.

    num_workers > 0 builds batches in that many worker processes (grain multiprocessing).
    """
    ds = self.dataset().to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
    if num_workers:
      # grain's workers read absl flags; outside an absl app (notebook, test) none were parsed.
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return iter(ds)

  def _rows(self, position: tuple[int, int]) -> tuple[np.ndarray, int]:
    """(this host's example indices of the batch at `position`, -1 for empty rows; its bucket's
    padded length)."""
    epoch, k = position
    b, members = self._plan(epoch)[k]
    rows, length = self.bucket_shapes[b]
    index = np.full(rows * self.process_count, -1, np.int32)
    index[:len(members)] = members
    return index[self.process_index * rows:(self.process_index + 1) * rows], length

  def _load(self, position: tuple[int, int]) -> Batch:
    index, length = self._rows(position)
    rows = len(index)
    batch = {key: np.full((rows, length), PAD_ID, np.int32) for key in ("src", "tgt_in", "tgt_out")}
    for row, i in enumerate(index):
      if i < 0:
        continue
      src, tgt = self.data.source(i), self.data.target(i)
      batch["src"][row, :len(src)] = src
      if self.config.source_eos:
        batch["src"][row, len(src)] = EOS_ID
      put_target(batch, row, tgt)
    batch["index"] = index
    return batch

  def _plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """`epoch_plan(epoch)`, remembered for the current and the previous epoch."""
    plan = self._plans.get(epoch)
    if plan is None:
      plan = self.epoch_plan(epoch)
      self._plans = {k: v for k, v in self._plans.items() if k >= epoch - 1} | {epoch: plan}
    return plan


class _Positions:
  """(epoch, batch) for every position of the stream: what grain indexes and checkpoints."""

  def __init__(self, pipeline: Pipeline):
    self.per_epoch = pipeline.batches_per_epoch
    self.epochs = pipeline.num_epochs

  def __len__(self) -> int:
    return sys.maxsize if self.epochs is None else self.per_epoch * self.epochs

  def __getitem__(self, i: int) -> tuple[int, int]:
    if not 0 <= i < len(self):
      raise IndexError(i)
    return divmod(int(i), self.per_epoch)
