"""benchmarks/data/speech_lists.py: Speech Commands and LibriSpeech layouts (built here in
miniature) become TSV lists that the speech_files dataset reads, with the corpora's own splits."""

import importlib.util
import pathlib

import numpy as np
from scipy.io import wavfile

from s2s_jax.data import open_dataset

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "speech_lists", ROOT / "benchmarks" / "data" / "speech_lists.py")
speech_lists = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(speech_lists)


def _clip(path: pathlib.Path, n: int = 1600) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  wavfile.write(path, 16000, np.random.default_rng(n).integers(-99, 99, n).astype(np.int16))


def test_speech_commands_splits_follow_its_lists_and_skip_background_noise(tmp_path):
  root = tmp_path / "sc"
  for clip in ("yes/a_nohash_0.wav", "yes/b_nohash_0.wav", "no/a_nohash_0.wav",
               "no/c_nohash_1.wav", "_background_noise_/white.wav"):
    _clip(root / clip)
  (root / "validation_list.txt").write_text("yes/b_nohash_0.wav\n")
  (root / "testing_list.txt").write_text("no/c_nohash_1.wav\n")
  counts = speech_lists.speech_commands(str(root), str(root))  # lists inside: relative paths
  assert counts == {"train": 2, "validation": 1, "test": 1}
  assert (root / "test.tsv").read_text() == "no/c_nohash_1.wav\tno\n"
  ds = open_dataset("speech_files", data_dir=str(tmp_path / "tfds"), options=dict(
      directory=str(root),
      files={s: f"{s}.tsv" for s in ("train", "validation", "test")}))
  assert ds.split("train").columns()[1] == ["no", "yes"]
  assert len(ds.split("validation").columns()[0][0]) == 1600


def test_librispeech_lists_utterances_with_a_wav_lowercased_and_names_the_missing(tmp_path,
                                                                                capsys):
  chapter = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123"
  _clip(chapter / "84-121123-0000.wav")
  (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n"
                                               "84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n")
  counts = speech_lists.librispeech(str(tmp_path / "LibriSpeech"), str(tmp_path / "ls"),
                                    ["dev-clean"])
  assert counts == {"dev-clean": 1}
  # Lists outside the corpus's directory hold absolute paths.
  assert (tmp_path / "ls" / "dev-clean.tsv").read_text() == (
      f"{chapter / '84-121123-0000.wav'}\tgo do you hear\n")
  assert "1 utterances have no WAV file" in capsys.readouterr().err
