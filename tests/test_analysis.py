"""The teaching and analysis scripts: the bottleneck demo (benchmarks/bottleneck.py) and the
length analysis (benchmarks/length_analysis.py)."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bottleneck  # noqa: E402
import length_analysis  # noqa: E402

from s2s_jax import metrics  # noqa: E402
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID  # noqa: E402


def test_bottleneck_batch_holds_each_string_and_its_reversal_padded():
  rng = np.random.default_rng(0)
  batch = bottleneck.make_batch(rng, 3, np.array([2, 5, 1]), max_length=6)
  assert all(x.shape == (3, 7) for x in batch.values())
  for row, n in enumerate([2, 5, 1]):
    src = batch["src"][row]
    symbols = src[:n]
    assert src[n] == EOS_ID and np.all(src[n + 1:] == PAD_ID) and np.all(symbols > EOS_ID)
    assert batch["tgt_in"][row, 0] == BOS_ID
    np.testing.assert_array_equal(batch["tgt_in"][row, 1:n + 1], symbols[::-1])
    np.testing.assert_array_equal(batch["tgt_out"][row, :n + 1], [*symbols[::-1], EOS_ID])
    assert np.all(batch["tgt_out"][row, n + 1:] == PAD_ID)


@pytest.mark.slow
def test_bottleneck_demo_no_attention_falls_off_with_length_and_attention_does_not(tmp_path):
  # The demo at a test's size: a 6-symbol alphabet, strings of 2-12, 32 units, 200 steps of 32.
  results = bottleneck.run(steps=200, min_length=2, max_length=12, hidden_size=32,
                           per_length=20, num_symbols=6, learning_rate=1e-2, batch_size=32)
  none = results["models"]["no attention"]["by_length"]
  att = results["models"]["attention (Luong)"]["by_length"]
  # Where the effect is robust at this budget: the state-only model reverses the shortest
  # strings and loses symbols of the longest; attention keeps the long ones.
  assert none[2]["symbol_accuracy"] - none[12]["symbol_accuracy"] > 0.25, none
  assert att[12]["symbol_accuracy"] > none[12]["symbol_accuracy"] + 0.25, att
  bottleneck.plot(results, str(tmp_path / "b.png"))
  assert (tmp_path / "b.png").stat().st_size > 10_000
  json.dumps(results)  # what main writes


def test_length_groups_hold_every_sentence_once_and_score_like_the_whole():
  lengths = [3, 1, 7, 7, 2, 9, 4, 4]
  edges = length_analysis.bucket_edges(lengths, 3)
  assert edges[-1] == 9 and edges == sorted(edges)
  predictions = ["A B", "C", "D", "E F", "G", "H I", "J", "K"]
  references = [["A B"], ["C"], ["X"], ["E F"], ["G", "Y"], ["Z"], ["J"], ["Q"]]
  rows = length_analysis.scores_by_length(predictions, references, lengths, edges, "wer")
  assert sum(r["sentences"] for r in rows) == len(lengths)
  wrong = sum(r["wer"] * r["sentences"] for r in rows)
  assert wrong == pytest.approx(metrics.g2p_scores(predictions, references)["wer"] * len(lengths))
  # By hand: quantiles 3.3, 6, 9 -> edges 4, 6, 9; lengths {1, 2, 3, 4, 4}: one wrong ("K");
  # none in 5-6 (no row); {7, 7, 9}: two wrong.
  assert edges == [4, 6, 9]
  assert [(r["min_length"], r["max_length"], r["sentences"]) for r in rows] == [
      (1, 4, 5), (7, 9, 3)]
  assert [r["wer"] for r in rows] == pytest.approx([0.2, 2 / 3])


def test_length_analysis_of_a_run_decodes_its_split_once_per_run(tiny_run, tmp_path):
  workdir, _ = tiny_run
  out = str(tmp_path / "lengths")
  length_analysis.main([f"--workdir={workdir},{workdir}", "--labels=a,b", "--split=test",
                        "--buckets=2", "--beam_size=1", f"--out={out}"])
  results = json.load(open(out + ".json"))
  a, b = results["runs"]["a"], results["runs"]["b"]
  assert a == {**b, "workdir": a["workdir"]}  # the same run twice scores the same
  assert sum(g["sentences"] for g in a["by_length"]) == results["sentences"] > 0
  table = open(out + ".md").read()
  assert table.count("\n") == 2 + len(a["by_length"]) + 1 and "a WER" in table
  assert os.path.getsize(out + ".png") > 5_000
