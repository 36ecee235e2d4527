"""Tokenizers: reserved ids, round trips, unknowns, and saving into / loading from a workdir."""

import io
import json
import pickle

import pytest
import sentencepiece as spm

from s2s_jax.data import (
  SentencePieceTokenizer,
  TokenizerSpec,
  VocabTokenizer,
  get_or_train_tokenizers,
  load_tokenizers,
)
from s2s_jax.special_ids import BOS_ID, EOS_ID, NUM_SPECIAL_IDS, PAD_ID, UNK_ID

SENTENCES = [
    "the cat sat on the mat", "a dog ran in the park",
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore", "how much wood would a woodchuck chuck",
    "peter piper picked a peck of pickled peppers", "the rain in spain stays mainly in the plain",
] * 20


def test_char_tokenizer_reserves_special_ids_and_round_trips():
  tok = VocabTokenizer.train("char", ["hello", "world"])
  ids = tok.encode("hello")
  assert min(ids) >= NUM_SPECIAL_IDS and tok.vocab_size == NUM_SPECIAL_IDS + len(set("helowrd"))
  assert ids[2] == ids[3]  # the two l's
  assert tok.decode(ids) == "hello"
  assert tok.encode("hex") == ids[:2] + [UNK_ID]


def test_vocabulary_is_most_frequent_first_and_independent_of_data_order():
  a = VocabTokenizer.train("word", ["b a c a", "a b"])
  b = VocabTokenizer.train("word", ["a b", "b a c a"])
  assert a.tokens == b.tokens == ("a", "b", "c")
  assert VocabTokenizer.train("word", ["b a c a", "a b"], min_count=2).tokens == ("a", "b")


def test_word_tokenizer_round_trips_phones_and_decode_stops_at_eos():
  tok = VocabTokenizer.train("word", ["HH AH0 L OW1", "W ER1 L D"])
  ids = tok.encode("W ER1 L D")
  assert len(ids) == 4 and tok.decode(ids) == "W ER1 L D"
  assert tok.decode([BOS_ID, *ids, EOS_ID, ids[0], PAD_ID]) == "W ER1 L D"
  assert tok.decode([ids[0], UNK_ID]) == "W <unk>"


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_has_project_special_ids_and_round_trips(model_type):
  tok = SentencePieceTokenizer.train(SENTENCES, vocab_size=60, model_type=model_type)
  proc = spm.SentencePieceProcessor(model_proto=tok.model_proto)
  assert [proc.id_to_piece(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
  assert tok.vocab_size == 60
  for text in ("the cat sat on the mat", "a lazy woodchuck picked sea shells"):
    ids = tok.encode(text)
    assert min(ids) >= NUM_SPECIAL_IDS
    assert tok.decode(ids + [EOS_ID, 7]) == text
  copy = pickle.loads(pickle.dumps(tok))  # grain worker processes receive tokenizers by pickle
  assert copy.encode("the mat") == tok.encode("the mat")


def test_sentencepiece_model_with_other_special_ids_is_rejected():
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES), model_writer=model,
                                 vocab_size=40, minloglevel=2)  # default ids: unk 0, bos 1, eos 2
  with pytest.raises(ValueError, match="pad/bos/eos/unk ids"):
    SentencePieceTokenizer(model.getvalue())


def test_trained_tokenizers_are_saved_and_reloaded_identically(tmp_path):
  src_texts = ["hello", "world", "hold"]
  tgt_texts = ["HH AH0 L OW1", "W ER1 L D", "HH OW1 L D"]
  directory = str(tmp_path / "tokenizers")
  src, tgt = get_or_train_tokenizers(directory, TokenizerSpec("char"), TokenizerSpec("word"),
                                     src_texts, tgt_texts)
  src2, tgt2 = load_tokenizers(directory)
  assert (src2, tgt2) == (src, tgt)
  # A second call with the same specs loads rather than retrains: other texts change nothing.
  src3, _ = get_or_train_tokenizers(directory, TokenizerSpec("char"), TokenizerSpec("word"),
                                    ["zzz"], ["Z"])
  assert src3 == src


def test_workdir_tokenizers_with_other_specs_are_refused(tmp_path):
  directory = str(tmp_path)
  get_or_train_tokenizers(directory, TokenizerSpec("char"), TokenizerSpec("word"), ["ab"], ["A"])
  with pytest.raises(ValueError, match="holds tokenizers built with"):
    get_or_train_tokenizers(directory, TokenizerSpec("char", min_count=2), TokenizerSpec("word"),
                            ["ab"], ["A"])


def test_shared_sentencepiece_vocabulary_is_one_file_trained_on_both_sides(tmp_path):
  spec = TokenizerSpec("sentencepiece", vocab_size=70)
  src, tgt = get_or_train_tokenizers(str(tmp_path), spec, spec, SENTENCES[:7],
                                     [s.upper() for s in SENTENCES[:7]], shared=True)
  assert src is tgt
  manifest = json.loads((tmp_path / "tokenizers.json").read_text())
  assert manifest["source"]["file"] == manifest["target"]["file"] == "shared.model"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.model", "tokenizers.json"]
  assert UNK_ID not in src.encode("THE CAT") and UNK_ID not in src.encode("the cat")
  reloaded, _ = load_tokenizers(str(tmp_path))
  assert reloaded.encode("the CAT sat") == src.encode("the CAT sat")


def test_shared_needs_equal_specs_and_kinds_are_validated(tmp_path):
  with pytest.raises(ValueError, match="shared tokenizers need equal specs"):
    get_or_train_tokenizers(str(tmp_path), TokenizerSpec("char"), TokenizerSpec("word"),
                            ["a"], ["b"], shared=True)
  with pytest.raises(ValueError, match="tokenizer kind='chars' is invalid"):
    TokenizerSpec("chars")
  with pytest.raises(ValueError, match="unknown tokenizer fields"):
    TokenizerSpec.from_dict({"kind": "char", "vocab": 3})


def test_lowercase_tokenizers_read_cased_text_as_lowercase_and_the_manifest_records_it(tmp_path):
  spec = TokenizerSpec("char", lowercase=True)
  src, _ = get_or_train_tokenizers(str(tmp_path), spec, TokenizerSpec("word"),
                                   ["Hello", "world"], ["HH", "W"])
  assert src.tokens == tuple(sorted(set("helowrd"), key=lambda c: (-"helloworld".count(c), c)))
  assert src.encode("HeLLo") == src.encode("hello") and UNK_ID not in src.encode("WORLD")
  manifest = json.loads((tmp_path / "tokenizers.json").read_text())
  assert manifest["source"]["spec"]["lowercase"] is True
  assert manifest["target"]["spec"]["lowercase"] is False
  reloaded, target = load_tokenizers(str(tmp_path))
  assert reloaded.encode("WORLD") == src.encode("world") and target.encode("HH") != [UNK_ID]
  sp = SentencePieceTokenizer.train(SENTENCES, vocab_size=60, lowercase=True)
  assert sp.encode("The CAT sat") == sp.encode("the cat sat")
  assert pickle.loads(pickle.dumps(sp)).encode("THE MAT") == sp.encode("the mat")
  cased = SentencePieceTokenizer.train(SENTENCES, vocab_size=60)
  assert UNK_ID in cased.encode("THE MAT")  # without the option, capitals are unknown


def test_a_manifest_written_before_the_lowercase_option_loads_as_cased(tmp_path):
  get_or_train_tokenizers(str(tmp_path), TokenizerSpec("char"), TokenizerSpec("word"),
                          ["ab"], ["A"])
  path = tmp_path / "tokenizers.json"
  manifest = json.loads(path.read_text())
  for side in ("source", "target"):
    del manifest[side]["spec"]["lowercase"]
  path.write_text(json.dumps(manifest))
  src, _ = get_or_train_tokenizers(str(tmp_path), TokenizerSpec("char"), TokenizerSpec("word"),
                                   ["zz"], ["Z"])  # same specs: loads, does not retrain
  assert src.tokens == ("a", "b") and src.encode("A") == [UNK_ID]
  with pytest.raises(ValueError, match="holds tokenizers built with"):
    get_or_train_tokenizers(str(tmp_path), TokenizerSpec("char", lowercase=True),
                            TokenizerSpec("word"), ["ab"], ["A"])


def test_unknown_lists_each_out_of_vocabulary_token_once_in_order():
  chars = VocabTokenizer.train("char", ["abc"], lowercase=True)
  assert chars.unknown("Abxcyx") == ["x", "y"] and chars.unknown("CAB") == []
  words = VocabTokenizer.train("word", ["AA B"])
  assert words.unknown("AA ZZ B ZZ Q") == ["ZZ", "Q"]
  sp = SentencePieceTokenizer.train(SENTENCES, vocab_size=60)
  assert sp.unknown("the cat") == [] and sp.unknown("the \u00e9 cat") == ["\u00e9"]



def test_a_speech_run_saves_only_the_target_tokenizer_and_reloads_its_source_as_none(tmp_path):
  target = TokenizerSpec("char")
  src, tgt = get_or_train_tokenizers(str(tmp_path), None, target, iter(()), ["abc", "cab"])
  assert src is None and tgt.tokens == ("a", "b", "c")
  manifest = json.loads((tmp_path / "tokenizers.json").read_text())
  assert manifest["source"] is None
  assert sorted(p.name for p in tmp_path.iterdir()) == ["target.vocab.json", "tokenizers.json"]
  src, again = load_tokenizers(str(tmp_path))
  assert src is None and again.tokens == tgt.tokens
  reloaded = get_or_train_tokenizers(str(tmp_path), None, target, (), ["zzz"])  # not retrained
  assert reloaded[1].tokens == tgt.tokens
  with pytest.raises(ValueError, match="built with"):  # a text source is a different run
    get_or_train_tokenizers(str(tmp_path), target, target, ["x"], ["y"])
