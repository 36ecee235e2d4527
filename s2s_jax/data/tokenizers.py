"""Tokenizers with the project's reserved ids (0 pad, 1 bos, 2 eos, 3 unk), saved with the run.

Three kinds share one interface (`encode`, `decode`, `vocab_size`, `save`):
  char           one id per character (G2P spelling); decode joins characters.
  word           one id per whitespace-separated token (G2P phones); decode joins with spaces.
  sentencepiece  BPE or unigram subwords trained with the sentencepiece library.
Tokenizers are trained on the training split and written to `<workdir>/tokenizers/` with a
manifest, so decoding later loads exactly the same vocabularies (`load_tokenizers`).
`encode` never adds BOS/EOS; the input pipeline does. With `lowercase` (a spec field, recorded in
the manifest) a tokenizer lowercases every text it trains on and encodes, so "Hello" and "hello"
read the same; `unknown(text)` lists what `encode` would turn into <unk>.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import sentencepiece as spm

from s2s_jax.files import atomic_write
from s2s_jax.special_ids import BOS_ID, EOS_ID, NUM_SPECIAL_IDS, PAD_ID, UNK_ID

KINDS = ("char", "word", "sentencepiece")
SPECIAL_PIECES = ("<pad>", "<s>", "</s>", "<unk>")
MANIFEST = "tokenizers.json"


class Tokenizer(Protocol):
  """What the pipeline and decoding need from a tokenizer."""

  kind: str

  @property
  def vocab_size(self) -> int: ...

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: Iterable[int]) -> str: ...

  def pieces(self, ids: Iterable[int]) -> list[str]: ...

  def unknown(self, text: str) -> list[str]: ...

  def unknown_surfaces(self, text: str) -> list[str]: ...

  def save(self, path: str) -> None: ...


def _until_eos(ids: Iterable[int]) -> list[int]:
  """The ids before the first EOS, without PAD/BOS: what a decoded sequence means."""
  out = []
  for i in ids:
    i = int(i)
    if i == EOS_ID:
      break
    if i not in (PAD_ID, BOS_ID):
      out.append(i)
  return out


@dataclasses.dataclass(frozen=True)
class VocabTokenizer:
  """A char- or word-level tokenizer over an explicit token list; token k has id 4 + k."""

  kind: str  # "char" or "word"
  tokens: tuple[str, ...]
  lowercase: bool = False

  def __post_init__(self):
    if self.kind not in ("char", "word"):
      raise ValueError(f"VocabTokenizer kind={self.kind!r}; allowed: 'char', 'word'")
    if len(set(self.tokens)) != len(self.tokens):
      raise ValueError("VocabTokenizer tokens must be distinct")
    object.__setattr__(self, "_ids", {t: NUM_SPECIAL_IDS + k for k, t in enumerate(self.tokens)})

  @classmethod
  def train(cls, kind: str, texts: Iterable[str], min_count: int = 1,
            lowercase: bool = False) -> VocabTokenizer:
    """Vocabulary of every token seen at least `min_count` times, most frequent first."""
    counts = collections.Counter()
    for text in texts:
      text = text.lower() if lowercase else text
      counts.update(text if kind == "char" else text.split())
    # Ties broken by the token itself, so the vocabulary does not depend on the data's order.
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return cls(kind, tuple(ranked), lowercase)

  @property
  def vocab_size(self) -> int:
    return NUM_SPECIAL_IDS + len(self.tokens)

  def split(self, text: str) -> list[str]:
    text = text.lower() if self.lowercase else text
    return list(text) if self.kind == "char" else text.split()

  def encode(self, text: str) -> list[int]:
    return [self._ids.get(t, UNK_ID) for t in self.split(text)]

  def unknown(self, text: str) -> list[str]:
    """The tokens of `text` outside the vocabulary (encoded as <unk>), each once, in order."""
    return list(dict.fromkeys(self.unknown_surfaces(text)))

  def unknown_surfaces(self, text: str) -> list[str]:
    """The text of each <unk> that `encode(text)` gives, in order (repeats included)."""
    return [t for t in self.split(text) if t not in self._ids]

  def decode(self, ids: Iterable[int]) -> str:
    return ("" if self.kind == "char" else " ").join(self.pieces(_until_eos(ids)))

  def pieces(self, ids: Iterable[int]) -> list[str]:
    """The token of each id (specials as <pad>, <s>, </s>, <unk>), e.g. for plot labels."""
    return [self.tokens[i - NUM_SPECIAL_IDS] if i >= NUM_SPECIAL_IDS else SPECIAL_PIECES[i]
            for i in map(int, ids)]

  def save(self, path: str) -> None:
    atomic_write(path, json.dumps({"kind": self.kind, "tokens": self.tokens},
                                  ensure_ascii=False, indent=0).encode("utf-8"))

  @classmethod
  def load(cls, path: str, lowercase: bool = False) -> VocabTokenizer:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    return cls(data["kind"], tuple(data["tokens"]), lowercase)


class SentencePieceTokenizer:
  """Subwords from a sentencepiece model whose ids 0-3 are pad, bos, eos, unk."""

  kind = "sentencepiece"

  def __init__(self, model_proto: bytes, lowercase: bool = False):
    self.model_proto, self.lowercase = model_proto, lowercase
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    specials = [self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id()]
    if specials != [PAD_ID, BOS_ID, EOS_ID, UNK_ID]:
      raise ValueError(f"sentencepiece model has pad/bos/eos/unk ids {specials}; this project "
                       f"needs {[PAD_ID, BOS_ID, EOS_ID, UNK_ID]} (train it with `train`)")

  @classmethod
  def train(cls, texts: Iterable[str], vocab_size: int, model_type: str = "bpe",
            character_coverage: float = 1.0, seed_sentencepiece_size: int = 1_000_000,
            input_sentence_size: int = 2_000_000, lowercase: bool = False,
            **options: Any) -> SentencePieceTokenizer:
    """Trains in memory; `vocab_size` counts the 4 reserved ids. Extra options go to the trainer.

    At most `input_sentence_size` sentences (a deterministic sample) are used, as sentencepiece
    recommends for large corpora.
    """
    if model_type not in ("bpe", "unigram"):
      raise ValueError(f"sentencepiece model_type={model_type!r}; allowed: 'bpe', 'unigram'")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=(t.lower() for t in texts) if lowercase else iter(texts),
        model_writer=model, vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage,
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        seed_sentencepiece_size=seed_sentencepiece_size,
        input_sentence_size=input_sentence_size, shuffle_input_sentence=True,
        minloglevel=2, num_threads=os.cpu_count() or 1, **options)
    return cls(model.getvalue(), lowercase)

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text.lower() if self.lowercase else text)

  def unknown(self, text: str) -> list[str]:
    """The pieces of `text` that encode as <unk>, each once, in order."""
    return list(dict.fromkeys(self.unknown_surfaces(text)))

  def unknown_surfaces(self, text: str) -> list[str]:
    """The text of each <unk> that `encode(text)` gives, in order (repeats included):
    sentencepiece makes one <unk> of a run of unknown characters."""
    text = text.lower() if self.lowercase else text
    return [p.surface for p in self._sp.encode(text, return_type="proto").pieces
            if p.id == UNK_ID]

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.decode(_until_eos(ids))

  def pieces(self, ids: Iterable[int]) -> list[str]:
    """The subword piece of each id (specials as <pad>, <s>, </s>, <unk>)."""
    return [self._sp.id_to_piece(int(i)) for i in ids]

  def save(self, path: str) -> None:
    atomic_write(path, self.model_proto)

  @classmethod
  def load(cls, path: str, lowercase: bool = False) -> SentencePieceTokenizer:
    with open(path, "rb") as f:
      return cls(f.read(), lowercase)

  def __getstate__(self):  # the processor is not picklable; grain workers rebuild it
    return {"model_proto": self.model_proto, "lowercase": self.lowercase}

  def __setstate__(self, state):
    self.__init__(state["model_proto"], state.get("lowercase", False))


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
  """How to build one side's tokenizer. `vocab_size` and `model_type` are for sentencepiece,
  `min_count` for char/word; `lowercase` for every kind."""

  kind: str
  vocab_size: int = 8000
  model_type: str = "bpe"
  character_coverage: float = 1.0
  min_count: int = 1
  lowercase: bool = False

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"tokenizer kind={self.kind!r} is invalid; allowed values: {KINDS}")

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> TokenizerSpec:
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"unknown tokenizer fields {sorted(unknown)}")
    return cls(**d)

  def train(self, texts: Iterable[str]) -> Tokenizer:
    if self.kind == "sentencepiece":
      return SentencePieceTokenizer.train(texts, self.vocab_size, self.model_type,
                                          self.character_coverage, lowercase=self.lowercase)
    return VocabTokenizer.train(self.kind, texts, self.min_count, self.lowercase)


def _file_name(side: str, kind: str) -> str:
  return f"{side}.model" if kind == "sentencepiece" else f"{side}.vocab.json"


def load_tokenizer(path: str, kind: str, lowercase: bool = False) -> Tokenizer:
  if kind == "sentencepiece":
    return SentencePieceTokenizer.load(path, lowercase)
  return VocabTokenizer.load(path, lowercase)


def _saved_spec(manifest: Mapping[str, Any], side: str) -> dict[str, Any] | None:
  """A side's spec as saved, with fields added since (e.g. lowercase) at their defaults; None
  for a source without a tokenizer (speech)."""
  entry = manifest[side]
  if entry is None:
    return None
  return dataclasses.asdict(TokenizerSpec(**{"kind": entry["kind"], **entry.get("spec", {})}))


def load_tokenizers(directory: str) -> tuple[Tokenizer | None, Tokenizer]:
  """The (source, target) tokenizers saved in `directory` by `get_or_train_tokenizers`; the
  source is None for a run whose source is audio."""
  with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
    manifest = json.load(f)
  return tuple(None if manifest[side] is None else
               load_tokenizer(os.path.join(directory, manifest[side]["file"]),
                              manifest[side]["kind"], _saved_spec(manifest, side)["lowercase"])
               for side in ("source", "target"))


def get_or_train_tokenizers(
    directory: str, source: TokenizerSpec | None, target: TokenizerSpec,
    source_texts: Iterable[str], target_texts: Iterable[str], *,
    shared: bool = False) -> tuple[Tokenizer | None, Tokenizer]:
  """Loads the tokenizers saved in `directory`, or trains them and saves them there.

  Args:
    directory: e.g. `<workdir>/tokenizers`.
    source, target: what to build for each side; source None for a source that is not text
      (speech: the manifest records `"source": null` and only the target is trained).
    source_texts, target_texts: the training split's texts (iterables, read once each; the
      source's is not read when `source` is None).
    shared: one vocabulary for both sides, trained on source and target texts (needs both specs
      to be the same); its file is written once and the manifest points both sides at it.

  Raises:
    ValueError: tokenizers saved in `directory` were built with different specs (a run's
      vocabulary must not change under it).
  """
  manifest_path = os.path.join(directory, MANIFEST)
  wanted = {"source": None if source is None else dataclasses.asdict(source),
            "target": dataclasses.asdict(target), "shared": shared}
  if os.path.exists(manifest_path):
    with open(manifest_path, encoding="utf-8") as f:
      manifest = json.load(f)
    saved = {"source": _saved_spec(manifest, "source"),
             "target": _saved_spec(manifest, "target"), "shared": manifest.get("shared")}
    if saved != wanted:
      raise ValueError(f"{manifest_path} holds tokenizers built with {saved}, but the config asks "
                       f"for {wanted}; use a new workdir or the same tokenizer settings")
    return load_tokenizers(directory)
  if shared:
    if source is None or source != target:
      raise ValueError(f"shared tokenizers need equal specs, got {source} and {target}")
    tokenizer = source.train(itertools.chain(source_texts, target_texts))
    tokenizers = (tokenizer, tokenizer)
    files = (_file_name("shared", source.kind),) * 2
  else:
    tokenizers = (None if source is None else source.train(source_texts),
                  target.train(target_texts))
    files = (None if source is None else _file_name("source", source.kind),
             _file_name("target", target.kind))
  for name, tokenizer in dict(zip(files, tokenizers, strict=True)).items():  # shared: once
    if tokenizer is not None:
      tokenizer.save(os.path.join(directory, name))
  manifest = {"shared": shared}
  for side, spec, name in (("source", source, files[0]), ("target", target, files[1])):
    manifest[side] = None if spec is None else {"kind": spec.kind, "file": name,
                                                "spec": dataclasses.asdict(spec)}
  # The manifest is written last: its presence means every file it names is complete.
  atomic_write(manifest_path, json.dumps(manifest, indent=1).encode())
  return tokenizers
