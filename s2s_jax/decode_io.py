"""What the decode loop (`inference.Model.decode`) reads and returns: a model's inputs, read and
batched (text through the source tokenizer, or for a speech model WAV files and waveforms), and
its outputs (`Hypothesis`, `Result`). The loop sorts, batches and unpacks `Input`s alike for
both kinds of input; only reading, padding and labelling differ.

Lengths come from `ModelConfig` (`source_steps`, `source_size`, `memory_steps`), so nothing
here knows the audio front end or the encoder's pyramid.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from s2s_jax import decoding
from s2s_jax.data import extended_vocab, wav
from s2s_jax.data import tokenizers as tokenizers_lib
from s2s_jax.model_config import ModelConfig
from s2s_jax.special_ids import EOS_ID, PAD_ID

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Hypothesis:
  text: str
  score: float  # logprob / length penalty: what the search ranks by
  logprob: float  # sum of token log-probabilities, EOS included
  ids: tuple[int, ...]  # output token ids, without EOS


@dataclasses.dataclass(frozen=True)
class Result:
  """One input's outputs, best first. An empty (whitespace-only) input has no hypotheses, nor
  does audio shorter than one feature frame (25 ms). For audio, `source` is the file's path or
  `<N samples>` for an array, and `attention` runs over encoder steps (frames after the
  pyramid's reductions)."""

  source: str
  hypotheses: tuple[Hypothesis, ...]
  truncated: bool = False  # the source was cut to max_source_len tokens
  attention: np.ndarray | None = None  # [output tokens + EOS, source tokens + EOS], best hyp.
  unknown: tuple[str, ...] = ()  # source tokens the training data never had (read as <unk>)

  @property
  def text(self) -> str:
    """The best output ('' for an empty input)."""
    return self.hypotheses[0].text if self.hypotheses else ""


def hypotheses(out: decoding.Hypotheses, row: int, tokenizer: tokenizers_lib.Tokenizer,
               oovs: Sequence[str] = ()) -> tuple[Hypothesis, ...]:
  """Row `row` of a search's (host) output, best first; ids without EOS. `oovs`: the source's
  extended-vocabulary tokens, the text of ids >= V (`data.extended_vocab`)."""
  found = []
  for rank in range(out.score_BR.shape[1]):
    length = int(out.length_BR[row, rank])
    ids = [int(t) for t in out.tokens_BRT[row, rank, :length] if t != EOS_ID]
    found.append(Hypothesis(extended_vocab.decode(tokenizer, ids, oovs),
                            float(out.score_BR[row, rank]),
                            float(out.logprob_BR[row, rank]), tuple(ids)))
  return tuple(found)


@dataclasses.dataclass(frozen=True)
class Input:
  """One input as the decode loop sees it."""

  name: str  # Result.source: the text, a WAV path or "<N samples>"
  source: Any  # token ids ending in EOS, or int16 samples
  steps: int  # encoder input steps (tokens with EOS, feature frames); 0: nothing to decode
  truncated: bool = False
  unknown: tuple[str, ...] = ()


class Inputs:
  """A model's inputs: `read` them, `batch` some for `search`, `labels` of attention columns.
  Batches are padded to multiples of `pad_multiple` steps (so few shapes compile)."""

  pad_multiple: int
  pad_value: int
  dtype: Any

  def __init__(self, cfg: ModelConfig, tokenizer: tokenizers_lib.Tokenizer | None,
               max_source_len: int = 256):
    self.cfg, self.tokenizer, self.max_source_len = cfg, tokenizer, max_source_len

  def read(self, inputs: Sequence[Any]) -> list[Input]:
    raise NotImplementedError

  def labels(self, item: Input) -> list[str]:
    raise NotImplementedError

  def batch(self, items: Sequence[Input], pad_multiple: int | None = None) -> Any:
    """The model's source for `items` (as `search` takes it), padded at the end."""
    multiple = pad_multiple or self.pad_multiple
    size = self.cfg.source_size(-(-max(x.steps for x in items) // multiple) * multiple)
    rows = np.full((len(items), size), self.pad_value, self.dtype)
    lengths = np.zeros(len(items), np.int32)
    for r, x in enumerate(items):
      # Samples past the last whole frame enter no frame (as in training's batches).
      values = x.source[:size]
      rows[r, :len(values)], lengths[r] = values, len(values)
    return (rows, lengths) if self.cfg.source == "audio" else rows


def as_input_list(inputs: Any, *, audio: bool) -> list[Any]:
  """`inputs` (any iterable, read once) as a list, each checked: `str` for a text model; a WAV
  path (`str` / `os.PathLike`) or a 1-D waveform for a speech model.

  Raises:
    TypeError: `inputs` is a single input or not iterable, or an item has the wrong type (names
      its position and type).
  """
  single = str if not audio else (str, os.PathLike)
  if isinstance(inputs, (single, bytes)) or (audio and isinstance(inputs, np.ndarray)
                                            and inputs.ndim < 2):
    raise TypeError("decode takes a list of inputs; wrap a single one in a list")
  try:
    items = list(inputs)
  except TypeError:
    raise TypeError(f"decode takes an iterable of inputs, not {type(inputs).__name__}") from None
  for i, x in enumerate(items):
    if audio:
      ok = isinstance(x, (str, os.PathLike, np.ndarray, list, tuple))
      want = "a WAV path (str or os.PathLike) or a 1-D waveform (a NumPy array)"
    else:
      ok = isinstance(x, str)
      want = "str" + (" (decode bytes first, e.g. b.decode('utf-8'))" if isinstance(x, bytes)
                      else "")
    if not ok:
      raise TypeError(f"input {i} is {type(x).__name__}; decode takes {want}")
  return items


def for_model(cfg: ModelConfig, tokenizer: tokenizers_lib.Tokenizer | None,
              max_source_len: int = 256) -> Inputs:
  """The adapter of a model that reads `cfg.source`."""
  return (AudioInputs if cfg.source == "audio" else TextInputs)(cfg, tokenizer, max_source_len)


class TextInputs(Inputs):
  """Texts -> EOS-terminated token ids, cut to `max_source_len` (warned, marked `truncated`)."""

  pad_multiple, pad_value, dtype = 8, PAD_ID, np.int32

  def source_ids(self, text: str) -> tuple[list[int], bool]:
    """(ids with EOS, truncated?): what the model reads for `text`, as in training."""
    if self.max_source_len < 2:
      raise ValueError(f"max_source_len={self.max_source_len} must be >= 2 (a token and EOS)")
    if self.cfg.copy_oov_slots:  # the extended vocabulary, as training read it
      ids, _ = extended_vocab.extend_source(self.tokenizer, text, self.cfg.copy_oov_slots)
    else:
      ids = self.tokenizer.encode(text)
    truncated = len(ids) + 1 > self.max_source_len
    return ids[:self.max_source_len - 1] + [EOS_ID], truncated

  def read(self, texts: Sequence[str]) -> list[Input]:
    items = []
    for text in texts:
      ids, cut = self.source_ids(text) if text.strip() else ([], False)
      items.append(Input(text, ids, len(ids), cut, tuple(self.tokenizer.unknown(text))))
    truncated = [i for i, x in enumerate(items) if x.truncated]
    if truncated:
      log.warning("%d of %d inputs are longer than max_source_len=%d tokens and were cut "
                  "(input indices %s)", len(truncated), len(texts), self.max_source_len,
                  truncated[:10])
    flagged = [i for i, x in enumerate(items) if x.unknown]
    if flagged:
      log.warning("%d of %d inputs hold tokens the model never saw in training, read as "
                  "<unk> (input indices %s; see Result.unknown)", len(flagged), len(texts),
                  flagged[:10])
    return items

  def labels(self, item: Input) -> list[str]:
    return self.tokenizer.pieces(item.source)


class AudioInputs(Inputs):
  """WAV paths (resampled to the model's rate) or waveforms -> int16 samples; a blank line is
  an empty input; audio shorter than one frame has no output (warned)."""

  pad_multiple, pad_value, dtype = 16, 0, np.int16

  def read(self, inputs: Sequence[Any]) -> list[Input]:
    items = []
    for i, x in enumerate(inputs):
      if isinstance(x, str) and not x.strip():  # a blank line: no audio, no output
        wave, name = np.zeros(0, np.int16), x
      elif isinstance(x, (str, os.PathLike)):
        wave, name = wav.read_wav(x, self.cfg.sample_rate), os.fspath(x)
      else:
        wave = wav.as_int16(x, f"input {i}")
        name = f"<{len(wave)} samples>"
      items.append(Input(name, wave, int(self.cfg.source_steps(len(wave)))))
    short = [i for i, x in enumerate(items) if x.steps == 0 and len(x.source)]
    if short:
      log.warning("%d of %d inputs are shorter than one %g ms frame and have no output (input "
                  "indices %s)", len(short), len(inputs), self.cfg.feature_config.frame_ms,
                  short[:10])
    return items

  def labels(self, item: Input) -> list[str]:
    """Each encoder step's start time."""
    step_s = self.cfg.memory_step_seconds
    return [f"{k * step_s:.2f}s" for k in range(self.cfg.memory_steps(item.steps))]
