"""Debian package descriptions as a summarization corpus, offline: the long description's first
paragraph (or all of it) -> the one-line synopsis, as a tfds builder.

The data is apt's own index of English descriptions (the `*_i18n_Translation-en*` files in apt's
lists directory, fetched by `apt-get update -o Acquire::Languages=en`; lz4-, gzip- or
xz-compressed or plain). A record reads

  Package: node-response-time
  Description-md5: ...
  Description-en: X-Response-Time header manager for HTTP response - Node.js module
   This package provides a module to manage the X-Response-Time header in a HTTP response ...
   .
   Node.js is an event-based server-side JavaScript engine.

(Debian policy 5.6.13: continuation lines start with a space, " ." separates paragraphs.)

Near-duplicates never cross splits. Many packages share a description (`-dev`, `-doc`, `-data`
packages, python2 / python3 twins), so entries are grouped (union-find) by two keys: the
normalized source text (lowercase, letters and digits only), and the normalized synopsis
stem (parenthesized parts removed: "Foo library (documentation)" and "Foo library (Python 3)"
share "foo library"), the latter only where at most `MAX_STEM_GROUP` entries share it (so
"transitional package" does not tie hundreds of packages together). A group's split is a hash
of its smallest source key. Exact duplicate (source, synopsis) pairs are merged; train keeps
one example per distinct pair, validation and test one per distinct source, with every
synopsis of that source as its references. Entries are dropped (counted per reason) when
they have no long description or a source of fewer than `min_source_words` words. The counts
and the index files' fingerprint are in the dataset's metadata.

Shape of the data on this machine (Debian 12 main + updates + security, 2026-12-04): see
docs/data.md.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import lzma
import os
import re
import subprocess
from collections.abc import Iterator

import tensorflow_datasets as tfds

from s2s_jax.data import cmudict, textfiles

SPLITS = cmudict.SPLITS
MAX_STEM_GROUP = 20
_PATTERN = "*_i18n_Translation-en*"
_FETCH = "apt-get update -o Acquire::Languages=en"


@dataclasses.dataclass(frozen=True)
class Entry:
  package: str
  synopsis: str
  paragraphs: tuple[str, ...]  # the long description's paragraphs, each on one line


def apt_lists_dir() -> str:
  """apt's lists directory (`apt-config shell Dir::State::Lists`; /var/lib/apt/lists/)."""
  try:
    out = subprocess.run(["apt-config", "shell", "D", "Dir::State::Lists/d"],
                         capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"D='([^']+)'", out)
    if match:
      return match.group(1)
  except (OSError, subprocess.SubprocessError):
    pass
  return "/var/lib/apt/lists/"


def index_files(lists_dir: str) -> list[str]:
  """The Translation-en files under `lists_dir`, sorted.

  Raises:
    FileNotFoundError: there is none (the message names the apt command that fetches them).
  """
  paths = sorted(p for p in glob.glob(os.path.join(lists_dir, _PATTERN)) if os.path.isfile(p))
  if not paths:
    raise FileNotFoundError(f"no {_PATTERN} file in {lists_dir}: fetch apt's English package "
                            f"descriptions with `{_FETCH}` (as root), or set "
                            "data.options.lists_dir")
  return paths


def read_index(path: str) -> str:
  """A Translation-en file's text, decompressed by its suffix (.lz4, .gz, .xz or none)."""
  with open(path, "rb") as f:
    data = f.read()
  if path.endswith(".lz4"):
    import lz4.frame  # only these files need it
    data = lz4.frame.decompress(data)
  elif path.endswith(".gz"):
    data = gzip.decompress(data)
  elif path.endswith(".xz"):
    data = lzma.decompress(data)
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise textfiles.InputError(path, line, "not valid UTF-8") from None


def parse_index(text: str, path: str = "<index>") -> Iterator[Entry]:
  """The entries of a Translation-en file, in file order.

  Raises:
    textfiles.InputError: a record without `Package:` or `Description-en:` (names the line).
  """
  record: dict[str, list[str]] = {}
  field, start = None, 1
  for number, line in enumerate([*text.split("\n"), ""], start=1):
    if not line.strip():
      if record:
        yield _entry(record, path, start)
      record, field, start = {}, None, number + 1
    elif line[0] in " \t" and field is not None:
      record[field].append(line[1:])
    elif ":" in line:
      field, _, value = line.partition(":")
      record[field] = [value.strip()]
    else:
      raise textfiles.InputError(path, number, f"expected 'Field: value', got {line[:40]!r}")


def _entry(record: dict[str, list[str]], path: str, line: int) -> Entry:
  if "Package" not in record or "Description-en" not in record:
    raise textfiles.InputError(path, line, "a record without Package: or Description-en:")
  synopsis, *body = record["Description-en"]
  paragraphs, current = [], []
  for text in [*body, "."]:
    if text.strip() == ".":  # a paragraph break
      if current:
        paragraphs.append(" ".join(" ".join(current).split()))
      current = []
    else:
      current.append(text)
  return Entry(record["Package"][0], " ".join(synopsis.split()), tuple(paragraphs))


def source_key(text: str) -> str:
  return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def stem_key(synopsis: str) -> str:
  return source_key(re.sub(r"\([^)]*\)", " ", synopsis))


@dataclasses.dataclass
class Pairs:
  """The corpus after grouping: {split: {source: [synopsis, ...]}} and what happened."""

  splits: dict[str, dict[str, list[str]]]
  counts: dict[str, int]


def build_pairs(entries: list[Entry], whole_text: bool, min_source_words: int) -> Pairs:
  """Sources and their synopses, grouped into splits (see the module docstring)."""
  counts = collections.Counter(entries=len(entries))
  kept = []
  for e in entries:
    source = " ".join(e.paragraphs) if whole_text else (e.paragraphs[0] if e.paragraphs else "")
    if not source:
      counts["dropped: no long description"] += 1
    elif len(source.split()) < min_source_words:
      counts[f"dropped: source under {min_source_words} words"] += 1
    elif not e.synopsis:
      counts["dropped: empty synopsis"] += 1
    else:
      kept.append((source, e.synopsis))
  parent: dict[str, str] = {}

  def find(x: str) -> str:
    parent.setdefault(x, x)
    while parent[x] != x:
      parent[x] = parent[parent[x]]
      x = parent[x]
    return x

  stems = collections.Counter(stem_key(t) for _, t in kept)
  for source, target in kept:
    stem = stem_key(target)
    if stem and stems[stem] <= MAX_STEM_GROUP:
      a, b = find("s:" + source_key(source)), find("t:" + stem)
      if a != b:
        parent[max(a, b)] = min(a, b)
  members = collections.defaultdict(list)
  for source, target in kept:
    members[find("s:" + source_key(source))].append((source, target))
  splits: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
  for group in members.values():
    split = cmudict.split_of(min(source_key(s) for s, _ in group))  # the same 90/5/5 hash
    for source, target in group:
      targets = splits[split].setdefault(source, [])
      if target in targets:
        counts["merged: same source and synopsis"] += 1
      else:
        targets.append(target)
  counts["groups"] = len(members)
  counts["groups over one source"] = sum(len({s for s, _ in g}) > 1 for g in members.values())
  for split, sources in splits.items():
    counts[f"{split} sources"] = len(sources)
    counts[f"{split} pairs"] = sum(len(t) for t in sources.values())
  return Pairs(splits, dict(counts))


@dataclasses.dataclass
class DebianDescriptionsConfig(tfds.core.BuilderConfig):
  lists_dir: str = ""
  whole_text: bool = False
  min_source_words: int = 5
  files: tuple[str, ...] = ()


def make_config(lists_dir: str = "", whole_text: bool = False, min_source_words: int = 5
                ) -> DebianDescriptionsConfig:
  """The config reading the Translation-en files of `lists_dir` ("" = apt's lists directory):
  the first paragraph as source (`whole_text`: all paragraphs). Its name carries the files'
  fingerprint, so a changed apt index is prepared anew.

  Raises:
    FileNotFoundError: `lists_dir` holds no Translation-en file (names the apt command).
    ValueError: min_source_words < 1.
  """
  if min_source_words < 1:
    raise ValueError(f"debian_descriptions min_source_words={min_source_words} must be >= 1")
  files = tuple(index_files(lists_dir or apt_lists_dir()))
  digest = textfiles.fingerprint(list(files), salt=f"{whole_text}/{min_source_words}")[:16]
  return DebianDescriptionsConfig(
      name=f"{'whole' if whole_text else 'first'}-{digest}", lists_dir=lists_dir,
      whole_text=whole_text, min_source_words=min_source_words, files=files,
      description="Debian package descriptions -> synopses.")


class DebianDescriptions(tfds.core.GeneratorBasedBuilder):
  """Debian package descriptions -> synopses; build configs with `make_config`."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            "source": tfds.features.Text(), "target": tfds.features.Text(),
            "references": tfds.features.Sequence(tfds.features.Text())}),
        supervised_keys=("source", "target"), metadata=tfds.core.MetadataDict(),
        homepage="https://www.debian.org/doc/debian-policy/ch-controlfields.html#description",
        disable_shuffling=True)

  def pair_keys(self) -> dict:
    return {"source_key": "source", "target_key": "target", "references_key": "references"}

  def _split_generators(self, dl_manager):
    del dl_manager  # apt's files only
    config = self.builder_config
    entries = [e for path in config.files for e in parse_index(read_index(path), path)]
    pairs = build_pairs(entries, config.whole_text, config.min_source_words)
    self.info.metadata["fingerprint"] = textfiles.fingerprint(list(config.files))
    self.info.metadata["files"] = [os.path.basename(p) for p in config.files]
    self.info.metadata["counts"] = pairs.counts
    return {split: self._generate_examples(sources, split == "train")
            for split, sources in pairs.splits.items() if sources}

  def _generate_examples(self, sources, every_pair):
    for i, (source, targets) in enumerate(sources.items()):
      for k, target in enumerate(targets if every_pair else targets[:1]):
        yield f"{i}/{k}", {"source": source, "target": target, "references": targets}


BUILDER = DebianDescriptions
