"""Opening a dataset by name and reading it as (source, target) text pairs, without TensorFlow.

Names: `cmudict` (or `cmudict/no_stress`), `parallel_text` (the user's files), `spoken_words`
(espeak-ng's offline spoken CMUdict words), `speech_files` (the user's WAV files listed in TSV
files), or any tfds catalog dataset prepared in the array_record format (e.g.
`ted_hrlr_translate/pt_to_en`). Everything is read through `builder.as_data_source()`: random
access over ArrayRecord files, no TensorFlow.

Every dataset built from local files follows one pattern (`LocalBuilder`): its module has
`make_config(**options)`, whose keyword arguments are the dataset's options with their
defaults, and `BUILDER`, the tfds builder; a new one is a module and one `LOCAL_BUILDERS` row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import inspect
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
import tqdm

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True)
class TextPairs:
  """One split as a random-access sequence of (source, target) strings.

  `references(i)` lists every acceptable target of example i (several for cmudict words with
  alternate pronunciations; just the target elsewhere).
  """

  source: Any  # a tfds random-access data source of dict examples
  source_key: str
  target_key: str
  references_key: str | None = None

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> tuple[str, str]:
    return self._pair(self.source[index])

  def references(self, index: int) -> list[str]:
    example = self.source[index]
    if self.references_key is None:
      return [_text(example[self.target_key])]
    return [_text(r) for r in example[self.references_key]]

  def columns(self, chunk: int = 4096, desc: str | None = None) -> tuple[list[str], list[str]]:
    """All sources and all targets, in order, read in one pass (with a progress bar on a tty)."""
    sources, targets = [], []
    with tqdm.tqdm(total=len(self), desc=desc, unit=" examples", disable=None) as progress:
      for start in range(0, len(self), chunk):
        stop = min(len(self), start + chunk)
        for example in self.source.__getitems__(list(range(start, stop))):
          sources.append(_text(example[self.source_key]))
          targets.append(_text(example[self.target_key]))
        progress.update(stop - start)
    return sources, targets

  def all_references(self, chunk: int = 4096) -> list[list[str]]:
    """`references(i)` for every example, read in batched passes."""
    out = []
    for start in range(0, len(self), chunk):
      for example in self.source.__getitems__(list(range(start, min(len(self), start + chunk)))):
        out.append([_text(example[self.target_key])] if self.references_key is None
                   else [_text(r) for r in example[self.references_key]])
    return out

  def _pair(self, example) -> tuple[str, str]:
    return _text(example[self.source_key]), _text(example[self.target_key])


@dataclasses.dataclass(frozen=True)
class AudioPairs:
  """One split of a speech dataset as a random-access sequence of (int16 samples, transcript);
  every utterance is at `sample_rate` Hz."""

  source: Any  # a tfds random-access data source of dict examples
  audio_key: str
  text_key: str
  sample_rate: int

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
    example = self.source[index]
    return np.asarray(example[self.audio_key], np.int16), _text(example[self.text_key])

  def columns(self, chunk: int = 1024, desc: str | None = None
              ) -> tuple[list[np.ndarray], list[str]]:
    """All waveforms and all transcripts, in order, read in one pass."""
    audio, texts = [], []
    with tqdm.tqdm(total=len(self), desc=desc, unit=" utterances", disable=None) as progress:
      for start in range(0, len(self), chunk):
        stop = min(len(self), start + chunk)
        for example in self.source.__getitems__(list(range(start, stop))):
          audio.append(np.asarray(example[self.audio_key], np.int16))
          texts.append(_text(example[self.text_key]))
        progress.update(stop - start)
    return audio, texts

  def all_references(self) -> list[list[str]]:
    return [[text] for text in self.columns()[1]]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A prepared dataset: its tfds builder and which features are source / target.

  A speech dataset (`sample_rate` set) reads its splits as `AudioPairs`, others as `TextPairs`.
  """

  builder: tfds.core.DatasetBuilder
  source_key: str
  target_key: str
  references_key: str | None = None
  sample_rate: int | None = None  # Hz, for a speech dataset (audio source)

  @property
  def splits(self) -> list[str]:
    return list(self.builder.info.splits.keys())

  def split(self, name: str) -> TextPairs | AudioPairs:
    try:
      source = self.builder.as_data_source(split=name)
    except Exception as e:
      raise ValueError(
          f"{self.builder.name}: cannot read split {name!r} as an array_record data source "
          f"({e}). Prepared splits: {self.splits}. A catalog dataset must be prepared first: "
          f"tfds.builder({self.builder.name!r}, data_dir=...).download_and_prepare("
          "file_format='array_record')") from e
    if self.sample_rate:
      return AudioPairs(source, self.source_key, self.target_key, self.sample_rate)
    return TextPairs(source, self.source_key, self.target_key, self.references_key)

  @property
  def skipped(self) -> Mapping[str, Mapping[str, int]]:
    """Lines skipped while preparing, {split: {reason: count}} (parallel_text with skipping)."""
    return (self.builder.info.metadata or {}).get("skipped", {})


@dataclasses.dataclass(frozen=True)
class LocalBuilder:
  """A dataset built from local files: the module `module` (e.g. `s2s_jax.data.cmudict`), which
  has

    make_config(**options) -> its tfds BuilderConfig: the options the dataset takes, each a
      keyword argument with its default there (none: required); a dataset name's variant
      (`cmudict/no_stress`) is its `variant` option. The config's name carries a fingerprint
      of the files it reads, so edited data is prepared anew rather than read stale;
    BUILDER: the tfds GeneratorBasedBuilder, whose `pair_keys()` names the features read as
      source and target (and references, and the audio's sample rate).
  """

  module: str
  example: str  # a config whose data.options sets the options

  def load(self) -> Any:
    return importlib.import_module(self.module)


# Imported on first use: spoken_words and speech_files pull in audio code text runs never need.
LOCAL_BUILDERS = {
    "cmudict": LocalBuilder("s2s_jax.data.cmudict", "configs/g2p.py"),
    "parallel_text": LocalBuilder("s2s_jax.data.parallel_text", "configs/translate.py"),
    "spoken_words": LocalBuilder("s2s_jax.data.spoken_words",
                                 "the spoken_words options in docs/speech.md"),
    "speech_files": LocalBuilder("s2s_jax.data.speech_files",
                                 "the speech_files options in docs/speech.md"),
    "debian_descriptions": LocalBuilder("s2s_jax.data.debian_descriptions",
                                        "the debian_descriptions options in docs/data.md"),
}
CATALOG_OPTIONS = ("source_key", "target_key", "download")


def open_dataset(name: str, *, data_dir: str | None = None,
                 options: Mapping[str, Any] | None = None) -> Dataset:
  """Prepares (once) and opens a dataset.

  Args:
    name: a local builder (`LOCAL_BUILDERS`: `cmudict`, `cmudict/no_stress`, `parallel_text`,
      `spoken_words`, `speech_files`) or a tfds catalog name.
    data_dir: the tfds data directory (default ~/tensorflow_datasets).
    options: for a local builder, the arguments of its module's `make_config` (e.g.
      `parallel_text.make_config`: directory, files, name, skip_bad_lines); for catalog datasets,
      optionally `source_key` / `target_key` (default: the dataset's supervised keys) and
      `download=True` to download and prepare it (needs network, and TensorFlow for most
      catalog datasets).
  """
  base, _, variant = name.partition("/")
  local = LOCAL_BUILDERS.get(base)
  if local is None:
    return _catalog_dataset(name, data_dir, _check_options(name, CATALOG_OPTIONS, (), dict(
        options or {}), "configs/translate.py with --config.data.dataset=<name>"))
  module = local.load()
  parameters = inspect.signature(module.make_config).parameters
  takes = [k for k in parameters if k != "variant"]
  needs = [k for k, p in parameters.items() if p.default is inspect.Parameter.empty]
  options = _check_options(name, takes, needs, dict(options or {}), local.example)
  if variant:
    if "variant" not in parameters:
      raise ValueError(f"dataset {base!r} has no variants (got {name!r})")
    options["variant"] = variant
  builder = module.BUILDER(config=module.make_config(**options), data_dir=data_dir,
                           file_format="array_record")
  if not builder.is_prepared():
    _prepare(builder)
  return Dataset(builder, **builder.pair_keys())


def _prepare(builder: tfds.core.DatasetBuilder, **kwargs: Any) -> None:
  """`download_and_prepare` with one line before and after instead of tfds's own, which go to
  stdout (where train.py writes its result) and speak of downloads ("Unknown size") even for
  local files. tfds's progress bars (stderr) stay."""
  log.info("preparing dataset %s (%s) in %s; later runs reuse it", builder.name,
           builder.builder_config.name if builder.builder_config else "default",
           builder.data_dir)
  with contextlib.redirect_stdout(io.StringIO()):
    builder.download_and_prepare(**kwargs)
  counts = {name: split.num_examples for name, split in builder.info.splits.items()}
  log.info("prepared %s: %s examples", builder.name,
           ", ".join(f"{name} {n}" for name, n in counts.items()))


def _check_options(name: str, takes: Sequence[str], needs: Sequence[str],
                   options: dict[str, Any], example: str) -> dict[str, Any]:
  """The options a dataset takes; an option left empty ('', None, {}, False) that it does not
  take is dropped, so switching `data.dataset` alone works where the new dataset needs nothing.

  Raises:
    ValueError: an option the dataset does not take has a value, or one it needs is missing;
      the message names the options it takes and a config that sets them.
  """
  foreign = sorted(k for k, v in options.items() if k not in takes and v not in ("", None, False)
                   and not (isinstance(v, Mapping) and not v))
  missing = [k for k in needs if k not in options]
  if foreign or missing:
    problem = (f"options {foreign} are not among them" if foreign
               else f"it needs {missing}, which the config's data.options does not have")
    raise ValueError(f"dataset {name!r} takes the options {list(takes)} (data.options); "
                     f"{problem}. Start from {example}, whose data.options has those fields")
  return {k: v for k, v in options.items() if k in takes}


def _catalog_dataset(name, data_dir, options):
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    # tfds's own message lists all ~1,300 catalog names: one line with the close ones instead.
    base = name.partition("/")[0].partition(":")[0]
    known = [*LOCAL_BUILDERS, *tfds.list_builders(with_community_datasets=False)]
    close = difflib.get_close_matches(base, known, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"data.dataset={name!r}: no such dataset (local: "
                     f"{', '.join(sorted(LOCAL_BUILDERS))}; or a tfds catalog name, "
                     f"`tfds.list_builders()`){hint}") from None
  except ModuleNotFoundError as e:
    if "tensorflow" not in str(e):
      raise
    # e.g. librispeech, speech_commands, spoken_digit: their Audio features need TensorFlow.
    raise ValueError(f"tfds cannot construct {name!r} without TensorFlow (its features need it), "
                     "and s2s_jax reads data without TensorFlow. For speech, list the corpus's "
                     "WAV files for the speech_files dataset (benchmarks/data/speech_lists.py "
                     "does it for speech_commands and librispeech), or use the offline "
                     "spoken_words corpus (docs/speech.md)") from None
  if options.get("download"):
    _prepare(builder, file_format="array_record")
  keys = builder.info.supervised_keys
  source_key = options.get("source_key") or (keys[0] if keys else None)
  target_key = options.get("target_key") or (keys[1] if keys else None)
  if not (isinstance(source_key, str) and isinstance(target_key, str)):
    raise ValueError(f"{name}: set options source_key and target_key (the dataset's supervised "
                     f"keys are {keys!r}); features: {builder.info.features}")
  return Dataset(builder, source_key, target_key)
