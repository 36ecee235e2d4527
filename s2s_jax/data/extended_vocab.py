"""The source-side extended vocabulary of copy attention (See et al. 2017; OpenNMT-py's
`dynamic_dict`): source tokens outside the vocabulary can be copied and decoded as themselves.

Each sentence's distinct <unk> tokens, in order of first appearance, get the ids V, V + 1, ...
(V the vocabulary size) up to `slots` of them; more stay <unk>. A target <unk> whose text is one
of its source's gets that id, so training teaches the model to copy it; other target <unk>s
stay <unk>. The model embeds ids >= V as <unk> and puts their copy mass on the extra ids
(`ModelConfig.copy_oov_slots`); decoding turns them back into the source's text with the
sentence's list (`decode`). Both sides must share one tokenizer (`data.shared_vocab`).

  ids, oovs = extend_source(tok, "bar for zyx", 8)    # [id(bar), id(for), V], ("zyx",)
  extend_target(tok, "zyx bar", oovs)               # [V, id(bar)]
  decode(tok, [V, id(bar)], oovs)                   # "zyx bar"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from s2s_jax.data.tokenizers import SPECIAL_PIECES, Tokenizer, _until_eos
from s2s_jax.special_ids import UNK_ID


def extend_source(tokenizer: Tokenizer, text: str, slots: int
                  ) -> tuple[list[int], tuple[str, ...]]:
  """(`tokenizer.encode(text)` with its first `slots` distinct <unk>s as extra ids, their
  texts in id order)."""
  ids, surfaces = tokenizer.encode(text), iter(tokenizer.unknown_surfaces(text))
  oovs: dict[str, int] = {}
  out = []
  for i in ids:
    if i == UNK_ID:
      surface = next(surfaces)
      if surface not in oovs and len(oovs) < slots:
        oovs[surface] = tokenizer.vocab_size + len(oovs)
      i = oovs.get(surface, UNK_ID)
    out.append(i)
  return out, tuple(oovs)


def extend_target(tokenizer: Tokenizer, text: str, oovs: Sequence[str]) -> list[int]:
  """`tokenizer.encode(text)` with each <unk> that is one of the source's `oovs` as its id."""
  index = {surface: tokenizer.vocab_size + j for j, surface in enumerate(oovs)}
  surfaces = iter(tokenizer.unknown_surfaces(text))
  return [index.get(next(surfaces), UNK_ID) if i == UNK_ID else i
          for i in tokenizer.encode(text)]


def decode(tokenizer: Tokenizer, ids: Iterable[int], oovs: Sequence[str]) -> str:
  """`tokenizer.decode(ids)`, an extra id as its source text (an extra id past `oovs`, which a
  model gives only probability ~0, as <unk>)."""
  ids = _until_eos(ids)
  V = tokenizer.vocab_size
  if all(i < V for i in ids):
    return tokenizer.decode(ids)
  pieces = [(oovs[i - V] if i - V < len(oovs) else SPECIAL_PIECES[UNK_ID]) if i >= V
            else tokenizer.pieces([i])[0] for i in ids]
  if tokenizer.kind == "char":
    return "".join(pieces)
  if tokenizer.kind == "word":
    return " ".join(pieces)
  # sentencepiece: "▁" marks a space; an <unk> piece's text never holds one.
  return "".join(pieces).replace("\u2581", " ").strip(" ")
