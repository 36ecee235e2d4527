"""The user's own parallel corpus, from local files, as a tfds builder.

Each split is either one TSV file (`source<TAB>target` per line) or two line-aligned files
(`train.de`, `train.en`). Every line must hold exactly one tab (TSV) and a non-empty source and
target; the files must be UTF-8 and aligned files must have equally many lines. Violations raise
`textfiles.InputError` naming the file and line, unless `skip_bad_lines=True`: then bad lines (not
missing files or misaligned files) are skipped, counted per reason, logged, and recorded in the
dataset's metadata (`info.metadata["skipped"]`). Counts are per bad file line: a pair whose two
aligned lines are both undecodable counts twice. Examples keep file order (no tfds shuffling).

The config name carries a fingerprint of the files' contents, so edited data is prepared anew
rather than read stale from the tfds data directory.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence

import tensorflow_datasets as tfds

from s2s_jax.data import textfiles

log = logging.getLogger(__name__)

# A split's files: "train.tsv", or ("train.de", "train.en") for aligned source/target files.
SplitFiles = str | Sequence[str]


@dataclasses.dataclass
class ParallelTextConfig(tfds.core.BuilderConfig):
  """directory: where the files are; files: {split: SplitFiles} relative to `directory`."""

  directory: str = ""
  files: Mapping[str, SplitFiles] = dataclasses.field(default_factory=dict)
  skip_bad_lines: bool = False


def split_paths(directory: str, files: SplitFiles) -> list[str]:
  """The absolute paths of one split's files (one TSV or two aligned files)."""
  names = [files] if isinstance(files, str) else list(files)
  if len(names) not in (1, 2):
    raise ValueError(f"A split is one TSV file or two aligned files, got {names!r}")
  return [os.path.join(directory, name) for name in names]


def make_config(directory: str, files: Mapping[str, SplitFiles], *, name: str = "corpus",
                skip_bad_lines: bool = False) -> ParallelTextConfig:
  """A `ParallelTextConfig` whose name is `name` plus a fingerprint of every file's contents.

  Raises:
    textfiles.InputError: a file is missing (the message names the split).
  """
  if not files:
    raise ValueError("parallel_text needs at least one split, e.g. files={'train': 'train.tsv'}")
  if not re.fullmatch(r"[\w-]+", name):
    raise ValueError(f"parallel_text name={name!r} must be letters, digits, '_' or '-'")
  paths = []
  for split, split_files in sorted(files.items()):  # the name must not depend on dict order
    for path in split_paths(directory, split_files):
      paths.append(textfiles.check_exists(path, f"parallel_text files[{split!r}]"))
  # The split -> files mapping is part of the data: moving a file to another split is new data.
  layout = sorted((split, split_paths("", f)) for split, f in files.items())
  digest = textfiles.fingerprint(paths, salt=repr(layout))
  suffix = "-skip" if skip_bad_lines else ""
  return ParallelTextConfig(
      name=f"{name}-{digest[:16]}{suffix}", directory=os.path.abspath(directory),
      files={k: (v if isinstance(v, str) else tuple(v)) for k, v in files.items()},
      skip_bad_lines=skip_bad_lines, description=f"Parallel text from {directory}")


def read_tsv(path: str, skipped: textfiles.SkipCounter | None = None
             ) -> Iterator[tuple[int, str, str]]:
  """Yields (line, source, target) from a `source<TAB>target` file; see module doc for errors."""
  for number, line in textfiles.read_lines(path, "parallel_text TSV", skipped):
    if line is None:  # undecodable, already counted
      continue
    tabs = line.count("\t")
    if tabs != 1:
      found = "no tab" if tabs == 0 else f"{tabs} tabs"
      textfiles.reject(
          textfiles.InputError(path, number, f"expected source<TAB>target, found {found}"),
          skipped)
      continue
    source, target = line.split("\t")
    if pair := _nonempty(path, path, number, source, target, skipped):
      yield number, *pair


def read_aligned(source_path: str, target_path: str,
                 skipped: textfiles.SkipCounter | None = None) -> Iterator[tuple[int, str, str]]:
  """Yields (line, source, target) from two line-aligned files; see module doc for errors."""
  sources = textfiles.read_lines(source_path, "parallel_text source file", skipped)
  targets = textfiles.read_lines(target_path, "parallel_text target file", skipped)
  for number, (source, target) in enumerate(itertools.zip_longest(sources, targets), start=1):
    if source is None or target is None:  # one file ended first: never skippable
      short, long = (source_path, target_path) if source is None else (target_path, source_path)
      raise textfiles.InputError(
          short, number, f"file ends at line {number - 1} but its aligned file {long} has more "
          "lines; aligned files must have the same number of lines")
    if source[1] is None or target[1] is None:  # undecodable, already counted
      continue
    if pair := _nonempty(source_path, target_path, number, source[1], target[1], skipped):
      yield number, *pair


def _nonempty(source_path, target_path, number, source, target, skipped):
  """(source, target) stripped of surrounding whitespace, or None if a side is empty (skipped)."""
  source, target = source.strip(), target.strip()
  for path, side, text in ((source_path, "source", source), (target_path, "target", target)):
    if not text:
      textfiles.reject(textfiles.InputError(path, number, f"empty {side} side"), skipped)
      return None
  return source, target


class ParallelText(tfds.core.GeneratorBasedBuilder):
  """A parallel corpus from local files; build configs with `make_config`."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = []

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "source": tfds.features.Text(),
            "target": tfds.features.Text(),
        }),
        supervised_keys=("source", "target"),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # example i is the i-th good line, so outputs map back to lines
    )

  def pair_keys(self) -> dict:
    """The features `open_dataset` reads as source and target."""
    return {"source_key": "source", "target_key": "target"}

  def _split_generators(self, dl_manager):
    del dl_manager  # local data only
    config = self.builder_config
    self.info.metadata["skipped"] = {}
    return {split: self._generate_examples(split, split_paths(config.directory, files))
            for split, files in config.files.items()}

  def _generate_examples(self, split, paths):
    skipped = textfiles.SkipCounter() if self.builder_config.skip_bad_lines else None
    rows = read_tsv(paths[0], skipped) if len(paths) == 1 else read_aligned(*paths, skipped)
    count = 0
    for number, source, target in rows:
      count += 1
      yield number, {"source": source, "target": target}
    if not count:  # tfds would stop with a bare AssertionError ("No examples were yielded")
      bad = f", and {skipped.total} bad lines were skipped" if skipped and skipped.total else ""
      raise textfiles.InputError(paths[0], 0, f"the {split} split has no examples: the file "
                                 f"holds no source/target pair{bad}")
    if skipped is not None:
      self.info.metadata["skipped"][split] = skipped.as_dict()
      if skipped.total:
        log.warning("parallel_text %s: skipped %d bad lines %s; first: %s", split,
                        skipped.total, skipped.as_dict(), "; ".join(skipped.examples))


BUILDER = ParallelText
