"""The Python decoding API, decode.py and export, on the tiny copy-task model (conftest.tiny_run).

Scores are checked against the model's own teacher-forced log-probabilities; outputs against
decoding each sentence alone; the CLI and the exported artifact against `Model.decode`.
"""

import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys

import flax
import jax
import numpy as np
import pytest

import s2s_jax
from s2s_jax import checkpoint, inference, metrics, search
from s2s_jax import model as model_lib
from s2s_jax.special_ids import BOS_ID, EOS_ID

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORDS = ["abc", "h", "abcdefgh", "", "hgfedcbahgfedcba", "dead", "fade", "ggg", "beach"]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}


@pytest.fixture(scope="module")
def model(tiny_run):
  return s2s_jax.load(str(tiny_run[0]))


@functools.partial(jax.jit, static_argnums=1)
def _teacher_forced_logits(params, cfg, src, tgt_in):
  return model_lib.decode(params, cfg, model_lib.encode(params, cfg, src), tgt_in)[0]


def teacher_forced_token_logprobs(m: inference.Model, cases) -> list[np.ndarray]:
  """Per output token, log p(token | source, earlier tokens) for (source, output ids incl. any
  EOS) pairs, from one teacher-forced pass over all of them: independent of the search code."""
  src = np.zeros((len(cases), 24), np.int32)
  tgt_in = np.zeros((len(cases), 24), np.int32)
  for row, (source, out) in enumerate(cases):
    ids, _ = m.source_ids(source)
    src[row, :len(ids)] = ids
    tgt_in[row, :len(out)] = [BOS_ID, *out[:-1]]
  logp = jax.nn.log_softmax(np.asarray(
      _teacher_forced_logits(m.params, m.model_config, src, tgt_in), np.float64))
  return [np.array([logp[row, t, token] for t, token in enumerate(out)])
          for row, (_, out) in enumerate(cases)]


def teacher_forced_logprobs(m: inference.Model, cases) -> list[float]:
  """log p(output | source) for (source, output ids incl. any EOS) pairs."""
  return [float(x.sum()) for x in teacher_forced_token_logprobs(m, cases)]


def test_load_reads_the_best_last_and_a_named_checkpoint(model, tiny_run):
  workdir = str(tiny_run[0])
  metrics = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  wers = {r["step"]: r["eval_wer"] for r in metrics if "eval_wer" in r}
  assert wers[model.step] == min(wers.values())  # 'best' = the best validation step
  assert s2s_jax.load(workdir, "last").step == 40
  named = s2s_jax.load(workdir, 30)
  assert named.step == 30
  assert model.model_config.tgt_vocab_size == model.target_tokenizer.vocab_size
  with pytest.raises(ValueError, match=r"no checkpoint for step 7.*available: \[.*30, 40\]"):
    s2s_jax.load(workdir, 7)
  with pytest.raises(ValueError, match="checkpoint='newest' is invalid"):
    s2s_jax.load(workdir, "newest")


def test_load_average_last_is_the_mean_of_the_most_recent_checkpoints(tiny_run):
  workdir = str(tiny_run[0])
  averaged = s2s_jax.load(workdir, average_last=2)
  assert averaged.averaged_steps == (30, 40) and averaged.step == 40
  hand = jax.tree.map(lambda a, b: (np.asarray(a, np.float64) + np.asarray(b, np.float64)) / 2,
                      s2s_jax.load(workdir, 30).params, s2s_jax.load(workdir, 40).params)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7),
               averaged.params, hand)
  assert s2s_jax.load(workdir, average_last=1).params.keys() == averaged.params.keys()
  with pytest.raises(ValueError, match=r"average_last=9: .* keeps \d checkpoints \(available: "
                                       r"\[.*30, 40\]\)"):
    s2s_jax.load(workdir, average_last=9)
  with pytest.raises(ValueError, match="replaces checkpoint='last'"):
    s2s_jax.load(workdir, "last", average_last=2)


def test_averaging_refuses_parameters_of_a_different_config(model):
  flat = flax.traverse_util.flatten_dict(model.params)
  name = sorted(flat)[0]
  wider = flax.traverse_util.unflatten_dict(
      {**flat, name: np.zeros((*flat[name].shape[:-1], flat[name].shape[-1] + 1), np.float32)})
  with pytest.raises(ValueError, match=rf"parameter .*{name[-1]}.* in run B but .* in run A: "
                                       "checkpoints of different configs cannot be averaged"):
    checkpoint.average_params([model.params, wider], ["run A", "run B"])
  fewer = flax.traverse_util.unflatten_dict({k: v for k, v in flat.items() if k != name})
  with pytest.raises(ValueError, match="run B and run A have different parameters"):
    checkpoint.average_params([model.params, fewer], ["run A", "run B"])


def test_load_names_what_is_missing(tiny_run, tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    s2s_jax.load(str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="config.json is missing"):
    s2s_jax.load(str(tmp_path))
  shutil.copy(tiny_run[0] / "config.json", tmp_path / "config.json")
  with pytest.raises(FileNotFoundError, match="tokenizers.json is missing"):
    s2s_jax.load(str(tmp_path))
  shutil.copytree(tiny_run[0] / "tokenizers", tmp_path / "tokenizers")
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    s2s_jax.load(str(tmp_path))


@pytest.mark.parametrize("kind", ["gnmt", "average"])
def test_beam_scores_equal_the_teacher_forced_log_probability_normalized(model, kind):
  alpha = 0.6
  results = model.decode(WORDS, beam_size=4, nbest=3, alpha=alpha, length_penalty=kind,
                         max_len_ratio=1.0, max_len_offset=2)
  cases, hyps = [], []
  for word, result in zip(WORDS, results, strict=True):
    if not word:
      assert result.hypotheses == () and result.text == ""
      continue
    assert len(result.hypotheses) == 3
    scores = [h.score for h in result.hypotheses]
    assert scores == sorted(scores, reverse=True)
    for hyp in result.hypotheses:
      cut = len(hyp.ids) == len(word) + 2  # cut at the limit ceil(1.0 * len) + 2: no EOS
      cases.append((word, [*hyp.ids] if cut else [*hyp.ids, EOS_ID]))
      hyps.append(hyp)
  assert len(hyps) == 3 * (len(WORDS) - 1)
  for hyp, (_, out), want in zip(hyps, cases, teacher_forced_logprobs(model, cases), strict=True):
    assert hyp.logprob == pytest.approx(want, rel=1e-4, abs=1e-4)
    penalty = ((5 + len(out)) / 6) ** alpha if kind == "gnmt" else len(out) ** alpha
    assert hyp.score == pytest.approx(want / penalty, rel=1e-4, abs=1e-4)


def test_outputs_do_not_depend_on_batch_composition_or_padding(model, beam_size=4):
  together = model.decode(WORDS, beam_size=beam_size, batch_size=64)
  for word, batched in list(zip(WORDS, together, strict=True))[:5]:  # lengths 3, 1, 8, 0, 16
    alone = model.decode([word], beam_size=beam_size, batch_size=1)[0]
    assert alone.text == batched.text
    for a, b in zip(alone.hypotheses, batched.hypotheses, strict=True):
      assert a.ids == b.ids and a.score == pytest.approx(b.score, abs=1e-5)
  # Another mix: reversed order, batches of 2.
  mixed = model.decode(WORDS[::-1], beam_size=beam_size, batch_size=2)[::-1]
  assert [r.text for r in mixed] == [r.text for r in together]


def test_ensemble_beam_scores_are_the_log_of_the_members_mean_token_probabilities(tiny_run):
  members = [s2s_jax.load(str(tiny_run[0]), step) for step in (30, 40)]  # different weights
  both = s2s_jax.ensemble(members)
  results = both.decode(WORDS, beam_size=3, nbest=2, alpha=0.0, max_len_ratio=1.0,
                        max_len_offset=2)
  cases, hyps = [], []
  for word, result in zip(WORDS, results, strict=True):
    for hyp in result.hypotheses:
      cut = len(hyp.ids) == len(word) + 2  # cut at the limit: no EOS
      cases.append((word, [*hyp.ids] if cut else [*hyp.ids, EOS_ID]))
      hyps.append(hyp)
  assert len(hyps) == 2 * (len(WORDS) - 1)
  per_member = [teacher_forced_token_logprobs(m, cases) for m in members]
  for i, hyp in enumerate(hyps):
    a, b = per_member[0][i], per_member[1][i]
    want = float(np.sum(np.log((np.exp(a) + np.exp(b)) / 2)))
    assert hyp.logprob == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert hyp.score == pytest.approx(want, rel=1e-4, abs=1e-4)  # alpha 0: no length penalty
  # The members disagree, so the check above could tell the mean from either member alone.
  assert max(abs(m[i].sum() - h.logprob) for m in per_member for i, h in enumerate(hyps)) > 0.01


def test_ensemble_of_a_model_with_itself_decodes_as_the_model_and_bad_members_are_named(model):
  with pytest.raises(ValueError, match="at least two models, got 1"):
    s2s_jax.ensemble([model])
  swapped = inference.Model(model.model_config, model.params, model.target_tokenizer,
                            model.target_tokenizer)
  with pytest.raises(ValueError, match="member 1 has a different source vocabulary"):
    s2s_jax.ensemble([model, swapped])
  twice = s2s_jax.ensemble([model, model])
  assert twice.is_ensemble and len(twice.model_config) == 2
  with pytest.raises(ValueError, match="an ensemble has one attention per member"):
    twice.decode(["abc"], return_attention=True)
  for method in ("greedy", "beam"):
    alone, doubled = model.decode(WORDS, method=method), twice.decode(WORDS, method=method)
    assert [r.text for r in doubled] == [r.text for r in alone]
    assert [r.hypotheses[0].score for r in doubled if r.hypotheses] == pytest.approx(
        [r.hypotheses[0].score for r in alone if r.hypotheses], abs=1e-4)


def test_beam_size_one_is_greedy_search(model):
  greedy = model.decode(WORDS, method="greedy")
  assert [r.text for r in model.decode(WORDS, beam_size=1)] == [r.text for r in greedy]


def test_sampling_is_reproducible_and_independent_of_batching(model):
  a = model.decode(WORDS, method="sample", nbest=3, seed=7, batch_size=64)
  b = model.decode(WORDS, method="sample", nbest=3, seed=7, batch_size=4)
  assert [[h.ids for h in r.hypotheses] for r in a] == [[h.ids for h in r.hypotheses] for r in b]
  c = model.decode(WORDS, method="sample", nbest=3, seed=8, temperature=2.0)
  assert [[h.ids for h in r.hypotheses] for r in a] != [[h.ids for h in r.hypotheses] for r in c]


def test_too_long_input_is_cut_with_a_warning_and_empty_input_gives_empty_output(model, caplog):
  results = model.decode(["abcdefgh", "", "abc"], max_source_len=4)
  assert [r.truncated for r in results] == [True, False, False]
  assert "longer than max_source_len=4" in caplog.text
  assert results[0].text == model.decode(["abc"])[0].text  # the first 3 tokens + EOS
  assert results[1].hypotheses == () and results[1].text == ""


def test_cased_input_reads_as_lowercase_and_unseen_characters_are_flagged(model, caplog):
  assert model.source_tokenizer.lowercase  # configs/g2p.py (tiny's base) lowercases
  cased, plain, unseen = model.decode(["ABC", "abc", "abzz!"])
  assert cased.text == plain.text and cased.unknown == plain.unknown == ()
  assert unseen.unknown == ("z", "!")
  assert "1 of 3 inputs hold tokens the model never saw" in caplog.text


def test_bad_decode_options_are_named(model):
  with pytest.raises(ValueError, match="nbest=6 must not exceed beam_size=5"):
    model.decode(["abc"], nbest=6)
  with pytest.raises(ValueError, match="method='viterbi'"):
    model.decode(["abc"], method="viterbi")
  with pytest.raises(TypeError, match="list of inputs"):
    model.decode("abc")


def test_decode_reads_any_iterable_of_str_once(model):
  words = ["abc", "fade", "bead"]
  expected = [r.text for r in model.decode(words, beam_size=2)]
  assert [r.text for r in model.decode((w for w in words), beam_size=2)] == expected
  assert [r.text for r in model.decode(tuple(words), beam_size=2)] == expected
  assert [r.text for r in model.decode(np.array(words), beam_size=2)] == expected


@pytest.mark.parametrize(("inputs", "kw", "error", "message"), [
    ([b"hello"], {}, TypeError, r"input 0 is bytes; decode takes str \(decode bytes first"),
    (["abc", 3], {}, TypeError, "input 1 is int; decode takes str"),
    (b"hello", {}, TypeError, "list of inputs"),
    (17, {}, TypeError, "decode takes an iterable of inputs, not int"),
    (["abc"], {"beam_size": 2.5}, TypeError, r"beam_size=2.5 \(float\) must be an int"),
    (["abc"], {"beam_size": "5"}, TypeError, r"beam_size='5' \(str\) must be an int"),
    (["abc"], {"alpha": True}, TypeError, r"alpha=True \(bool\) must be a number"),
    (["abc"], {"batch_size": 0}, ValueError, "batch_size=0 must be >= 1"),
    (["abc"], {"batch_size": 2.0}, TypeError, r"batch_size=2.0 \(float\) must be an int"),
    (["abc"], {"top_p": 0.0}, ValueError, r"top_p=0.0 must be in \(0, 1\]"),
    (["abc"], {"temperature": 0.0}, ValueError, "temperature=0.0 must be > 0"),
    (["abc"], {"top_k": -1}, ValueError, "top_k=-1 must be >= 0"),
])
def test_decode_refuses_bad_inputs_and_options_naming_them(model, inputs, kw, error, message):
  with pytest.raises(error, match=message):
    model.decode(inputs, **kw)


def test_attention_rows_are_distributions_and_the_plot_is_a_png(model, tmp_path):
  result = model.decode(["beach"], return_attention=True)[0]
  weights = result.attention
  assert weights.shape == (len(result.hypotheses[0].ids) + 1, len("beach") + 1)
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
  weights2, src_pieces, out_pieces = model.attention("beach", "B E A C H")
  assert src_pieces == [*"beach", "</s>"] and out_pieces == [*"BEACH", "</s>"]
  assert weights2.shape == (6, 6)
  path = model.plot_attention("beach", path=str(tmp_path / "a.png"))
  assert pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exported_search_reloaded_in_a_fresh_process_matches_decode(model, tmp_path):
  words = ["abc", "hgfedcba", "dead"]
  s2s_jax.export(model, str(tmp_path / "model.exported"), beam_size=3, nbest=2, max_len=24)
  src = np.zeros((len(words), 16), np.int32)
  for i, word in enumerate(words):
    ids, _ = model.source_ids(word)
    src[i, :len(ids)] = ids
  np.save(tmp_path / "src.npy", src)
  script = ("import sys, jax, numpy as np\n"
            "exp = jax.export.deserialize(open(sys.argv[1], 'rb').read())\n"
            "tokens, logprob, score, length = exp.call(np.load(sys.argv[2]))\n"
            "np.savez(sys.argv[3], tokens=tokens, score=score)\n")
  subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.exported"),
                  str(tmp_path / "src.npy"), str(tmp_path / "out.npz")], env=ENV, check=True)
  out = np.load(tmp_path / "out.npz")
  for i, result in enumerate(model.decode(words, beam_size=3, nbest=2, max_len=24)):
    for rank, hyp in enumerate(result.hypotheses):
      assert model.target_tokenizer.decode(out["tokens"][i, rank]) == hyp.text
      assert float(out["score"][i, rank]) == pytest.approx(hyp.score, abs=1e-5)


def _decode_cli(*args, stdin=None):
  return subprocess.run([sys.executable, str(ROOT / "decode.py"), *args], input=stdin, env=ENV,
                        capture_output=True, text=True)


def test_decode_cli_writes_one_line_per_input_in_order_and_scores_references(model, tiny_run,
                                                                             tmp_path):
  lines = ["abc", "", "hgfedcbahgfedcba", "dead", "Abz"]
  (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
  (tmp_path / "ref.txt").write_text("A B C\n\nH G F E D C B A\nX\tD E A D\nA B Z\n")
  # The run twice: an ensemble of a model with itself, which must decode as the model alone.
  run = _decode_cli(f"--workdir={tiny_run[0]},{tiny_run[0]}", f"--input={tmp_path / 'in.txt'}",
                    f"--reference={tmp_path / 'ref.txt'}", "--max_source_len=9")
  assert run.returncode == 0, run.stderr
  want = [r.text for r in model.decode(lines, max_source_len=9)]
  assert run.stdout.split("\n")[:-1] == want and want[1] == ""
  assert "input line 3 is longer than --max_source_len=9" in run.stderr
  assert "input line 5 has 'z', never seen in training: read as <unk>" in run.stderr
  assert "input line 1 has" not in run.stderr
  scores = json.loads(run.stderr.strip().splitlines()[-1])
  refs = [["A B C"], ["H G F E D C B A"], ["X", "D E A D"], ["A B Z"]]
  expected = metrics.g2p_scores([want[0], want[2], want[3], want[4]], refs)
  assert scores == {"decoded": 4, **{k: pytest.approx(v) for k, v in expected.items()}}


def test_decode_cli_with_source_writes_a_parallel_text_corpus_of_the_train_split(model, tiny_run,
                                                                                 tmp_path):
  from s2s_jax.data import open_dataset
  corpus = tmp_path / "distilled.tsv"
  run = _decode_cli(f"--workdir={tiny_run[0]}", "--split=train", "--with_source",
                    f"--output={corpus}", "--beam_size=2")
  assert run.returncode == 0, run.stderr
  words = model.split("train").columns()[0]
  teacher = [r.text for r in model.decode(words, beam_size=2)]
  pairs = open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=dict(
      directory=str(tmp_path), files={"train": corpus.name})).split("train")
  expected = [(w, t) for w, t in zip(words, teacher, strict=True) if t.strip()]
  assert list(zip(*pairs.columns(), strict=True)) == expected and len(expected) > len(words) / 2
  if len(expected) < len(words):  # outputs that came out empty are left out, and counted
    assert f"{len(words) - len(expected)} non-empty inputs decoded to an empty output" in run.stderr
  refused = _decode_cli(f"--workdir={tiny_run[0]}", "--with_source", "--nbest=2", stdin="abc\n")
  assert refused.returncode != 0 and "--with_source writes one output per input" in refused.stderr


def test_decode_cli_takes_one_checkpoint_per_ensemble_member(tiny_run):
  run_dir = str(tiny_run[0])
  words = ["abc", "fade", "hgfedcba"]
  run = _decode_cli(f"--workdir={run_dir},{run_dir}", "--checkpoint=30,40", "--nbest=2",
                    "--beam_size=3", stdin="\n".join(words) + "\n")
  assert run.returncode == 0, run.stderr
  both = s2s_jax.ensemble([s2s_jax.load(run_dir, 30), s2s_jax.load(run_dir, 40)])
  expected = [(h.text, h.score) for r in both.decode(words, beam_size=3, nbest=2)
              for h in r.hypotheses]
  rows = [line.split("\t") for line in run.stdout.splitlines()]
  assert [r[3] for r in rows] == [text for text, _ in expected]
  assert [float(r[2]) for r in rows] == pytest.approx([score for _, score in expected], abs=1e-3)
  averaged = _decode_cli(f"--workdir={run_dir}", "--average_last=2", "--beam_size=1",
                         stdin="\n".join(words) + "\n")
  assert averaged.returncode == 0, averaged.stderr
  assert "the mean of checkpoint steps [30, 40]" in averaged.stderr
  mean = s2s_jax.load(run_dir, average_last=2)
  assert averaged.stdout.splitlines() == [r.text for r in mean.decode(words, beam_size=1)]
  mismatch = _decode_cli(f"--workdir={run_dir},{run_dir}", "--checkpoint=30,40,best",
                         stdin="abc\n")
  assert mismatch.returncode != 0
  assert "--checkpoint has 3 values for 2 --workdir values" in mismatch.stderr


def test_decode_cli_n_best_tsv_from_stdin(model, tiny_run):
  run = _decode_cli(f"--workdir={tiny_run[0]}", "--nbest=2", "--beam_size=3",
                    stdin="abc\n\nfade\n")
  assert run.returncode == 0, run.stderr
  rows = [line.split("\t") for line in run.stdout.splitlines()]
  assert [(r[0], r[1]) for r in rows] == [("0", "1"), ("0", "2"), ("1", "1"), ("2", "1"),
                                          ("2", "2")]
  expected = model.decode(["fade"], beam_size=3, nbest=2)[0].hypotheses
  assert [r[3] for r in rows[3:]] == [h.text for h in expected]
  assert float(rows[3][2]) == pytest.approx(expected[0].score, abs=1e-3)


def test_training_validation_scores_are_greedy_decoding_of_the_best_checkpoint(model, tiny_run):
  # One search path: the run's logged validation WER / PER at its best step is what
  # Model.decode (and so decode.py) gives with the evaluation's greedy options.
  rows = [json.loads(line) for line in open(os.path.join(tiny_run[0], "metrics.jsonl"))]
  logged = next(r for r in rows if r["step"] == model.step and "eval_wer" in r)
  pairs = model.split("validation")
  words, references = pairs.columns()[0], pairs.all_references()
  factor = model.config["train"]["max_decode_length_factor"]
  hyps = [r.text for r in model.decode(words, method="greedy", max_len_ratio=factor,
                                       max_len_offset=10, max_len=1 << 16)]
  scores = metrics.g2p_scores(hyps, references)
  assert (scores["wer"], scores["per"]) == pytest.approx((logged["eval_wer"], logged["eval_per"]))


def test_search_option_overrides_name_an_unknown_option():
  opts = search.with_overrides(search.SearchOptions(), {"beam_size": 3, "alpha": 0.0})
  assert (opts.beam_size, opts.alpha, opts.method) == (3, 0.0, "beam")
  with pytest.raises(TypeError, match=r"unknown search option\(s\) \['beam_width'\]"):
    search.with_overrides(opts, {"beam_width": 3})
