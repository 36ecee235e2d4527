"""The extended vocabulary of copy attention (s2s_jax.data.extended_vocab, ModelConfig.
copy_oov_slots): the id bookkeeping on hand-built cases for word and sentencepiece tokenizers,
the pipeline's arrays, the mixture over the extra ids against a NumPy loop, the model (extra
ids embed as <unk>; a closed gate puts the attention on them), decoding back to the source's
text, the config checks, and a run that learns to copy words it has no id for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import decode_io, decoding, pointer
from s2s_jax.data import extended_vocab
from s2s_jax.data.pipeline import TokenizedSplit
from s2s_jax.data.tokenizers import SentencePieceTokenizer, VocabTokenizer
from s2s_jax.model import ModelConfig, Seq2Seq
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID, UNK_ID

WORDS = VocabTokenizer.train("word", ["a b c d", "a b"])  # ids a 4, b 5, c 6, d 7; V = 8


def _id(word):
  return WORDS.encode(word)[0]


def test_source_unknowns_get_extra_ids_in_order_of_first_appearance_up_to_the_slots():
  V = WORDS.vocab_size
  ids, oovs = extended_vocab.extend_source(WORDS, "a zyx b zyx qq c", 8)
  assert ids == [_id("a"), V, _id("b"), V, V + 1, _id("c")] and oovs == ("zyx", "qq")
  ids, oovs = extended_vocab.extend_source(WORDS, "a zyx b zyx qq c", 1)
  assert ids == [_id("a"), V, _id("b"), V, UNK_ID, _id("c")] and oovs == ("zyx",)
  assert extended_vocab.extend_source(WORDS, "a b", 8) == (WORDS.encode("a b"), ())


def test_a_target_unknown_gets_its_source_id_only_when_the_source_has_it():
  V = WORDS.vocab_size
  assert extended_vocab.extend_target(WORDS, "qq zyx new a", ("zyx", "qq")) == [
      V + 1, V, UNK_ID, _id("a")]


def test_decoding_turns_extra_ids_back_into_the_source_text():
  V = WORDS.vocab_size
  oovs = ("zyx", "qq")
  assert extended_vocab.decode(WORDS, [V + 1, V, _id("a"), EOS_ID, V], oovs) == "qq zyx a"
  assert extended_vocab.decode(WORDS, [V + 5, _id("a")], oovs) == "<unk> a"  # no such slot
  assert extended_vocab.decode(WORDS, [_id("a"), UNK_ID], oovs) == WORDS.decode([4, UNK_ID])


def test_sentencepiece_unknown_runs_round_trip_through_the_extra_ids():
  texts = [f"the quick brown fox jumps over the lazy dog {i}" for i in range(200)]
  tok = SentencePieceTokenizer.train(texts, 60)
  text = "the fox QQ-ÄÖ dog ÄÖ"
  ids, oovs = extended_vocab.extend_source(tok, text, 4)
  assert oovs == ("QQ-ÄÖ", "ÄÖ") and UNK_ID not in ids
  assert [i - tok.vocab_size for i in ids if i >= tok.vocab_size] == [0, 1]
  assert extended_vocab.decode(tok, ids, oovs) == text
  plain = tok.encode("the lazy fox")
  assert extended_vocab.decode(tok, plain, ()) == tok.decode(plain)


def test_the_pipeline_stores_extended_ids_on_both_sides_and_each_sources_list():
  pairs = [("a zyx b", "zyx a"), ("c d", "d new")]
  data = TokenizedSplit.build(pairs, WORDS, WORDS, copy_slots=2)
  V = WORDS.vocab_size
  assert data.source(0).tolist() == [_id("a"), V, _id("b")]
  assert data.target(0).tolist() == [V, _id("a")]
  assert data.target(1).tolist() == [_id("d"), UNK_ID]
  assert data.oovs == (("zyx",), ())
  plain = TokenizedSplit.build(pairs, WORDS, WORDS)
  assert plain.oovs == () and plain.source(0).tolist() == [_id("a"), UNK_ID, _id("b")]


def test_the_mixture_over_extra_ids_equals_a_numpy_loop():
  rng = np.random.default_rng(0)
  B, S, V, X = 2, 4, 6, 9
  logits = rng.normal(size=(B, V)).astype(np.float32)
  ids = np.array([[4, 6, 7, 2], [6, 5, 2, 0]], np.int32)  # 6 and 7: extra ids of row 0
  w = rng.random((B, S)).astype(np.float32)
  w[1, 3] = 0.0
  w /= w.sum(-1, keepdims=True)
  g = rng.random((B, 1)).astype(np.float32)
  expected = np.zeros((B, X))
  for b in range(B):
    p = np.exp(logits[b] - logits[b].max())
    expected[b, :V] = g[b, 0] * p / p.sum()
    for s in range(S):
      expected[b, ids[b, s]] += (1 - g[b, 0]) * w[b, s]
  got = pointer.mix(jnp.asarray(logits), jnp.asarray(w), jnp.asarray(ids), jnp.asarray(g), X)
  assert got.shape == (B, X)
  np.testing.assert_allclose(np.exp(got), expected, rtol=1e-5, atol=1e-7)
  assert float(got[1, 7]) == pytest.approx(np.log(1e-30))  # an extra id row 1 lacks: ~0


def _model(slots=3):
  cfg = ModelConfig(src_vocab_size=12, tgt_vocab_size=12, embed_size=8, hidden_size=16,
                    copy_attention=True, copy_oov_slots=slots)
  model = Seq2Seq(cfg)
  return model, model.init(jax.random.PRNGKey(0), method=Seq2Seq.create_params)["params"]


SRC = jnp.array([[5, 12, 7, 12, 2], [13, 6, 14, 2, 0]], jnp.int32)  # 12-14: extra ids


def test_extra_ids_read_as_unk_and_a_closed_gate_puts_their_attention_on_them():
  model, params = _model()
  unk_src = jnp.where(SRC >= 12, UNK_ID, SRC)
  tgt_in = jnp.array([[BOS_ID, 12, 7], [BOS_ID, 14, 13]], jnp.int32)
  # An open gate (g = 1): the output is the softmax alone, that of the same model reading <unk>
  # in place of each extra id through a plain vocabulary; the extra ids get ~0.
  opened = {**params, "copy": {"W": jnp.zeros_like(params["copy"]["W"]),
                               "b": jnp.full((1,), 30.0)}}
  forced = model.apply({"params": opened}, SRC, tgt_in)
  assert forced.shape == (2, 3, 15)
  plain_cfg = ModelConfig(src_vocab_size=12, tgt_vocab_size=12, embed_size=8, hidden_size=16)
  plain = Seq2Seq(plain_cfg).apply({"params": {k: v for k, v in params.items() if k != "copy"}},
                                   unk_src, jnp.where(tgt_in >= 12, UNK_ID, tgt_in))
  np.testing.assert_allclose(np.exp(forced[..., :12]), jax.nn.softmax(plain), rtol=1e-5,
                             atol=1e-7)
  assert float(np.exp(forced[..., 12:]).max()) < 1e-6
  params = {**params, "copy": {"W": jnp.zeros_like(params["copy"]["W"]),
                               "b": jnp.full((1,), -30.0)}}
  enc = model.apply({"params": params}, SRC, method=Seq2Seq.encode)
  logp, _, weights = model.apply({"params": params}, enc, enc.initial_carry,
                                 jnp.full((2,), BOS_ID), method=Seq2Seq.decode_step,
                                 return_attention=True)
  np.testing.assert_allclose(np.exp(logp[0, 12]), weights[0, 1] + weights[0, 3], rtol=1e-5)
  np.testing.assert_allclose(np.exp(logp[1, 14]), weights[1, 2], rtol=1e-5)
  # Beam search over the 15 ids emits extra ids, and its scores stay the model's.
  K = 2
  tiled = decoding.tile_beams(enc, K)
  out = decoding.beam_search(
      lambda c, t: model.apply({"params": params}, tiled, c, t, method=Seq2Seq.decode_step),
      tiled.initial_carry, 2, K, 4, alpha=0.0)
  assert int(out.tokens_BRT.max()) >= 12


def test_a_copy_beam_over_extra_ids_gives_each_sentence_what_it_gives_it_alone():
  from s2s_jax import search
  model, params = _model()
  opts = search.SearchOptions(beam_size=3, nbest=2, max_len=5)
  both = search.search_jit(params, model.config, SRC, opts)
  for b in range(2):
    alone = search.search_jit(params, model.config, SRC[b:b + 1], opts)
    np.testing.assert_array_equal(alone.tokens_BRT[0], both.tokens_BRT[b])
    np.testing.assert_allclose(alone.score_BR[0], both.score_BR[b], rtol=1e-5)


def test_hypotheses_name_the_source_tokens_behind_extra_ids():
  out = decoding.Hypotheses(
      tokens_BRT=np.array([[[WORDS.vocab_size, _id("a"), EOS_ID, PAD_ID]]]),
      length_BR=np.array([[3]]), score_BR=np.array([[-1.0]]), logprob_BR=np.array([[-1.0]]))
  (hyp,) = decode_io.hypotheses(out, 0, WORDS, ("zyx",))
  assert hyp.text == "zyx a" and hyp.ids == (WORDS.vocab_size, _id("a"))


@pytest.mark.parametrize(("kw", "message"), [
    ({"copy_attention": False}, "copy_oov_slots=2 extends the output vocabulary of copy"),
    ({"copy_attention": True, "ctc_weight": 0.3}, "needs copy_attention=True and ctc_weight=0"),
    ({"copy_attention": True, "copy_oov_slots": -1}, "copy_oov_slots=-1 is invalid"),
])
def test_slots_a_model_cannot_use_are_refused_naming_the_field(kw, message):
  fields = {"src_vocab_size": 12, "tgt_vocab_size": 12, "copy_oov_slots": 2, **kw}
  with pytest.raises(ValueError, match=message):
    ModelConfig(**fields)


def _names_task(directory, n):
  """Pairs "<common words> <name> <common words>" -> "<name> <first word>", where every name
  occurs once: the vocabulary (min_count 2) never has it, so only the extended vocabulary can
  produce it."""
  rng = np.random.default_rng(0)
  common = ["red", "green", "blue", "cat", "dog", "runs", "sits", "big", "old", "new"]
  lines = []
  for i in range(n):
    name = "".join(rng.choice(list("qwrtzpsdfghjk"), 5)) + str(i)
    before = list(rng.choice(common, rng.integers(1, 3)))
    after = list(rng.choice(common, rng.integers(0, 3)))
    lines.append(f"{' '.join(before + [name] + after)}\t{name} {before[0]}\n")
  for split, part in (("train", lines[:-40]), ("validation", lines[-40:-20]),
                      ("test", lines[-20:])):
    (directory / f"{split}.tsv").write_text("".join(part))
  return {s: f"{s}.tsv" for s in ("train", "validation", "test")}


@pytest.mark.slow
def test_a_copy_run_learns_to_emit_source_words_it_has_no_id_for(tmp_path):
  from configs import tiny
  from s2s_jax import inference, training
  config = tiny.get_config()
  config.data.dataset = "parallel_text"
  config.data.options = {"directory": str(tmp_path), "files": _names_task(tmp_path, 640),
                         "name": "names"}
  config.data.data_dir = str(tmp_path / "tfds")
  spec = {"kind": "word", "min_count": 2}
  config.data.source_tokenizer = spec
  config.data.target_tokenizer = spec
  config.data.shared_vocab = True
  config.model.attention_score = "general"
  config.model.copy_attention = True
  config.model.copy_oov_slots = 2
  config.train.eval_metric = "rouge1"
  config.train.num_steps = 150
  config.train.eval_every = 150
  config.train.checkpoint_every = 150
  config.train.log_every = 50
  result = training.train_and_evaluate(config, str(tmp_path / "run"))
  model = inference.load(str(tmp_path / "run"))
  sources = [line.split("\t")[0] for line in (tmp_path / "test.tsv").read_text().splitlines()]
  results = model.decode(sources, beam_size=2)
  names = [s.split("\t")[1].split()[0] for s in (tmp_path / "test.tsv").read_text().splitlines()]
  assert all(r.unknown and name in r.unknown for r, name in zip(results, names, strict=True))
  copied = sum(r.text.split()[:1] == [name] for r, name in zip(results, names, strict=True))
  # Without the extended vocabulary every name would be <unk>: none could be right.
  assert copied >= 15, [r.text for r in results]
  assert result["test_rouge1"] > 50  # the evaluation decodes the extra ids too
