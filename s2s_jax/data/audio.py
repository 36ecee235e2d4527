"""Speech batches: waveforms bucketed by frame count, transcripts as token ids.

`audio_split` reads a split's int16 samples and target ids into a `TokenizedSplit` (its
sources are samples); `AudioPipeline` is the grain pipeline of `Pipeline` (same shuffling, epochs,
exact resume, per-host rows) with buckets of frame counts. Each batch is a dict of arrays for
this host's rows:
  audio [B, N] int16 (N = the samples of the bucket's frame count: (L - 1) * hop + frame
  length; zeros after each utterance), audio_len [B] int32 (samples), tgt_in / tgt_out [B, T]
  (T = max_target_length), index [B] (-1 for an empty row).
The features are computed from `audio` on device (`s2s_jax.features`), so the frame count here
is the one `features.num_frames` gives.

BatchingConfig's fields read in frames on the source side: `max_tokens` is padded frames per
global batch, `bucket_lengths` the padded frame counts, `max_source_length` the most frames
kept; `max_target_length` (required) is the padded target length of every batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from s2s_jax.data.pipeline import (
    Batch,
    BatchingConfig,
    Pipeline,
    TokenizedSplit,
    flatten,
    put_target,
)
from s2s_jax.data.tokenizers import Tokenizer
from s2s_jax.special_ids import PAD_ID


def audio_split(pairs: Iterable[tuple[np.ndarray, str]], target: Tokenizer) -> TokenizedSplit:
  """A speech split, e.g. an `AudioPairs`, as a `TokenizedSplit` whose sources are int16 samples
  and whose targets are the transcripts' ids."""
  audio, ids = [], []
  for samples, text in pairs:
    audio.append(np.asarray(samples, np.int16))
    ids.append(target.encode(text))
  return TokenizedSplit(*flatten(audio, np.int16), *flatten(ids, np.int32))


class AudioPipeline(Pipeline):
  """`Pipeline` for speech: buckets by frame count (see the module docstring)."""

  def __init__(self, data: TokenizedSplit, config: BatchingConfig, *, frame_length: int,
               hop_length: int, **kw):
    if config.max_target_length is None:
      raise ValueError("AudioPipeline needs BatchingConfig.max_target_length: the padded "
                       "target length of every batch")
    if config.source_eos:
      config = dataclasses.replace(config, source_eos=False)  # a waveform has no EOS
    self.frame_length, self.hop_length = frame_length, hop_length
    super().__init__(data, config, **kw)

  def frames(self, num_samples: np.ndarray) -> np.ndarray:
    """Frames that fit inside each utterance (as `features.num_frames` counts them)."""
    # A NumPy twin of features.num_frames: the pipeline counts every utterance of a split on the
    # host, where a jnp call would dispatch to the device; tests hold the two equal.
    n = np.asarray(num_samples)
    return np.where(n >= self.frame_length, 1 + (n - self.frame_length) // self.hop_length, 0)

  def samples_for(self, frames: int) -> int:
    """The samples a bucket of `frames` frames holds."""
    return (frames - 1) * self.hop_length + self.frame_length

  def _lengths(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src_frames = self.frames(np.diff(self.data.src_offsets))
    tgt_len = np.diff(self.data.tgt_offsets) + 1
    return src_frames, tgt_len, src_frames  # the frame count alone picks the bucket

  def _row_positions(self, length: int) -> int:
    return length + self.config.max_target_length  # frames + the fixed target length

  def _load(self, position: tuple[int, int]) -> Batch:
    index, frames = self._rows(position)
    rows, T = len(index), self.config.max_target_length
    batch = {"audio": np.zeros((rows, self.samples_for(frames)), np.int16),
             "audio_len": np.zeros(rows, np.int32),
             "tgt_in": np.full((rows, T), PAD_ID, np.int32),
             "tgt_out": np.full((rows, T), PAD_ID, np.int32)}
    for row, i in enumerate(index):
      if i < 0:
        continue
      # Samples past the bucket's last whole frame cannot enter any frame: leave them out.
      audio = self.data.source(i)[:batch["audio"].shape[1]]
      tgt = self.data.target(i)
      batch["audio"][row, :len(audio)] = audio
      batch["audio_len"][row] = len(audio)
      put_target(batch, row, tgt)
    batch["index"] = index
    return batch
