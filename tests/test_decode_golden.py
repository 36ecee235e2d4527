"""Recorded outputs of fixed tiny models: refactors of the model, the search or the decode loop
must leave every hypothesis and score unchanged.

One in-memory `Model` per kind of attention (and a speech model), its parameters the seeded
initialization with the output weights scaled up (peaked distributions, so that hypotheses end
at varied lengths, some at EOS and some at their length limit), decodes
fixed inputs through `Model.decode` (sorting, batching, padding and unpacking included) with
beam 5 / n-best 3, greedy and sampling. `tests/golden_decode.json` was recorded from the code as
it was before the attention table, the one decode loop and the declared search options (commit
a0fe5b4); if this test fails, outputs changed: re-record only for an intended change, and say
why in the commit message:

  python tests/test_decode_golden.py --record
"""

import json
import pathlib
import sys

import jax
import numpy as np
import pytest

from s2s_jax import ModelConfig, Seq2Seq, inference
from s2s_jax.data.tokenizers import VocabTokenizer

GOLDEN = pathlib.Path(__file__).with_name("golden_decode.json")
SOURCE = VocabTokenizer("char", tuple("abcdefgh"))
TARGET = VocabTokenizer("word", tuple("ABCDEFGH"))
WORDS = ["abc", "", "hgfedcbahgf", "d", "bead", "cafe"]
SMALL = dict(embed_size=8, hidden_size=12, encoder_hidden_size=6, encoder_layers=1,
             decoder_layers=1)
MODELS = {
    "none": dict(attention="none"),
    "bahdanau": dict(attention="bahdanau", attention_size=5),
    "luong_dot_feed": dict(attention="luong", attention_score="dot", input_feeding=True,
                           bidirectional=False, encoder_hidden_size=12),
    "luong_general": dict(attention="luong", attention_score="general", cell="gru"),
    "location": dict(attention="location", location_filters=2, location_width=3),
    "audio_location": dict(source="audio", attention="location", num_mels=8, encoder_layers=2,
                           encoder_reduce=2, location_filters=2, location_width=3),
}
SEARCHES = {
    "beam5_nbest3": dict(beam_size=5, nbest=3),
    "greedy": dict(method="greedy"),
    "sample2": dict(method="sample", nbest=2, seed=3, top_k=4),
}


def _model(name: str) -> inference.Model:
  cfg = ModelConfig(src_vocab_size=SOURCE.vocab_size, tgt_vocab_size=TARGET.vocab_size,
                    **{**SMALL, **MODELS[name]})
  params = Seq2Seq(cfg).init(jax.random.PRNGKey(0), method=Seq2Seq.create_params)["params"]
  params["output"]["W"] = params["output"]["W"] * 4.0
  audio = cfg.source == "audio"
  return inference.Model(cfg, params, None if audio else SOURCE, TARGET,
                         config={"train": {"max_decode_length_factor": 0.1}} if audio else {})


def _inputs(name: str) -> list:
  if MODELS[name].get("source") != "audio":
    return WORDS
  rng = np.random.default_rng(0)
  return [(rng.normal(size=n) * 2000).astype(np.int16) for n in (1600, 0, 4000, 100, 2300)]


def _decode(name: str, search: str) -> list[list[list]]:
  """Per input, [[ids], score] of each hypothesis, best first."""
  results = _model(name).decode(_inputs(name), batch_size=4, **SEARCHES[search])
  return [[[list(h.ids), h.score] for h in r.hypotheses] for r in results]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_decoded_hypotheses_and_scores_equal_the_recorded_ones(name):
  golden = json.loads(GOLDEN.read_text())
  for search in SEARCHES:
    got, want = _decode(name, search), golden[name][search]
    assert [[ids for ids, _ in r] for r in got] == [[ids for ids, _ in r] for r in want], search
    for r_got, r_want in zip(got, want, strict=True):
      assert [s for _, s in r_got] == pytest.approx([s for _, s in r_want], rel=1e-5, abs=1e-6)


def test_the_recorded_outputs_end_at_varied_lengths_so_they_can_catch_a_change():
  golden = json.loads(GOLDEN.read_text())
  assert set(golden) == set(MODELS)
  lengths = {len(ids) for model in golden.values() for r in model["beam5_nbest3"] for ids, _ in r}
  assert len(lengths) >= 4
  assert all(r == [] for r in (golden["none"]["greedy"][1], golden["audio_location"]["greedy"][1]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["location", "audio_location"])
def test_attention_of_a_batch_whose_row_count_is_not_a_power_of_two(name):
  # The loop pads batches to a power-of-two row count; the attention pass sees the real rows.
  model = _model(name)
  inputs = [_inputs(name)[i] for i in (0, 2, 4)]  # three inputs that have outputs
  results = model.decode(inputs, return_attention=True, beam_size=2)
  cfg = model.model_config
  for x, r in zip(inputs, results, strict=True):
    steps = len(model.source_ids(x)[0]) if cfg.source == "tokens" else cfg.source_steps(len(x))
    assert r.attention.shape == (len(r.hypotheses[0].ids) + 1, cfg.memory_steps(steps))
    np.testing.assert_allclose(r.attention.sum(axis=1), 1.0, rtol=1e-5)


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
  GOLDEN.write_text(json.dumps({m: {s: _decode(m, s) for s in SEARCHES} for m in MODELS},
                               indent=None) + "\n")
  print(f"wrote {GOLDEN}")
