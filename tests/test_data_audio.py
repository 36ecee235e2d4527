"""Speech batches: bucketed by frame count, every utterance once per epoch, exact lengths (the
features of a batch row are the utterance's own), targets shifted, long examples counted."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import features
from s2s_jax.data import VocabTokenizer
from s2s_jax.data.audio import AudioPipeline, audio_split
from s2s_jax.data.pipeline import BatchingConfig
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID

FEATURES = features.FeatureConfig()  # 16 kHz: 400-sample frames every 160 samples
CONFIG = BatchingConfig(max_tokens=120, bucket_lengths=(10, 20, 40), max_target_length=8)


def _split(seed=0, n=30):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(300, 7200, n)  # 0 to 43 frames: some too long, one maybe too short
  audio = [rng.integers(-3000, 3000, k).astype(np.int16) for k in lengths]
  texts = ["".join(rng.choice(list("abcde"), rng.integers(1, 10))) for _ in range(n)]
  tok = VocabTokenizer.train("char", texts)
  return audio_split(zip(audio, texts, strict=True), tok), audio, texts, tok


def _pipeline(data, **kw):
  return AudioPipeline(data, CONFIG, frame_length=FEATURES.frame_length,
                       hop_length=FEATURES.hop_length, shuffle=True, seed=1, **kw)


def test_every_kept_utterance_is_batched_once_per_epoch_in_its_frame_bucket():
  data, audio, texts, tok = _split()
  pipeline = _pipeline(data)
  # The model's own frame count is the reference: the host-side copy in the pipeline must agree.
  samples = np.array([len(a) for a in audio])
  frames = np.asarray(features.num_frames(samples, FEATURES))
  np.testing.assert_array_equal(pipeline.frames(samples), frames)
  tgt_len = np.array([len(t) + 1 for t in texts])
  keep = (frames <= 40) & (tgt_len <= 8)
  assert pipeline.stats.num_kept == keep.sum()
  assert sum(pipeline.stats.dropped.values()) == len(audio) - keep.sum()
  assert pipeline.stats.real_tokens == frames[keep].sum() + tgt_len[keep].sum()
  seen, padded = [], 0
  ds = pipeline.dataset()
  for k in range(pipeline.batches_per_epoch):
    batch = ds[k]
    rows, samples = batch["audio"].shape
    bucket = (samples - FEATURES.frame_length) // FEATURES.hop_length + 1
    assert bucket in CONFIG.bucket_lengths and rows * bucket <= CONFIG.max_tokens
    padded += rows * (bucket + batch["tgt_in"].shape[1])  # frames + the fixed target length
    for row, i in enumerate(batch["index"]):
      if i < 0:
        assert not batch["audio"][row].any() and batch["audio_len"][row] == 0
        continue
      seen.append(int(i))
      n = int(batch["audio_len"][row])
      # Cut only past the bucket's last whole frame: the frame count is the utterance's own.
      assert pipeline.frames(n) == frames[i] <= bucket
      np.testing.assert_array_equal(batch["audio"][row, :n], audio[i][:n])
      assert not batch["audio"][row, n:].any()
      ids = tok.encode(texts[i])
      assert batch["tgt_in"][row, :len(ids) + 1].tolist() == [BOS_ID, *ids]
      assert batch["tgt_out"][row, :len(ids) + 1].tolist() == [*ids, EOS_ID]
      assert (batch["tgt_out"][row, len(ids) + 1:] == PAD_ID).all()
  assert sorted(seen) == sorted(np.flatnonzero(keep).tolist())
  assert pipeline.stats.padded_tokens == padded  # the logged padding share counts these


def test_features_of_a_batch_row_are_the_utterances_own():
  data, audio, _, _ = _split(seed=2, n=12)
  batch = _pipeline(data).dataset()[0]
  feats, frames = features.log_mel(jnp.asarray(batch["audio"]), jnp.asarray(batch["audio_len"]),
                                   FEATURES)
  for row, i in enumerate(batch["index"]):
    if i >= 0:
      alone, n = features.log_mel(jnp.asarray(audio[i])[None], jnp.array([len(audio[i])]),
                                  FEATURES)
      assert int(frames[row]) == int(n[0])
      np.testing.assert_allclose(feats[row, :int(n[0])], alone[0], atol=1e-4)


def test_audio_pipeline_resumes_exactly_and_needs_a_target_length():
  data, _, _, _ = _split(seed=3)
  pipeline = _pipeline(data)
  it = pipeline.iterator()
  for _ in range(3):
    next(it)
  state = it.get_state()
  want = [next(it)["index"].tolist() for _ in range(3)]
  again = pipeline.iterator()
  again.set_state(state)
  assert [next(again)["index"].tolist() for _ in range(3)] == want
  with pytest.raises(ValueError, match="needs BatchingConfig.max_target_length"):
    AudioPipeline(data, dataclasses.replace(CONFIG, max_target_length=None), frame_length=400,
                  hop_length=160, shuffle=False)


# ----------------------------------------------------------------------------- speech_files


def _speech_dir(tmp_path, lines=None):
  """A TSV listing three WAV files (one in a subdirectory, one at 8 kHz) and their waveforms."""
  from scipy.io import wavfile
  rng = np.random.default_rng(0)
  (tmp_path / "clips").mkdir()
  waves = [rng.integers(-3000, 3000, n).astype(np.int16) for n in (4000, 6400, 3000)]
  wavfile.write(tmp_path / "a.wav", 16000, waves[0])
  wavfile.write(tmp_path / "clips" / "b.wav", 16000, waves[1])
  wavfile.write(tmp_path / "c8k.wav", 8000, waves[2])
  rows = lines or ["a.wav\thello there", "clips/b.wav\tgood bye", "c8k.wav\tlow rate"]
  (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
  return waves


def test_speech_files_reads_listed_wavs_relative_to_the_list_at_the_models_rate(tmp_path):
  from s2s_jax.data import open_dataset
  waves = _speech_dir(tmp_path)
  ds = open_dataset("speech_files", data_dir=str(tmp_path / "tfds"),
                    options=dict(directory=str(tmp_path), files={"train": "train.tsv"}))
  assert ds.sample_rate == 16000
  audio, texts = ds.split("train").columns()
  assert texts == ["hello there", "good bye", "low rate"]
  np.testing.assert_array_equal(audio[0], waves[0])  # int16 at 16 kHz: exact
  np.testing.assert_array_equal(audio[1], waves[1])
  assert len(audio[2]) == 6000  # 3,000 samples at 8 kHz, resampled to 16 kHz


def test_speech_files_names_the_list_line_of_a_bad_entry_or_counts_it_when_skipping(tmp_path):
  from s2s_jax.data import InputError, open_dataset
  _speech_dir(tmp_path, ["a.wav\thello", "missing.wav\tgone", "a.wav", "clips/b.wav\tbye"])
  options = dict(directory=str(tmp_path), files={"train": "train.tsv"})
  with pytest.raises(InputError, match=r"train.tsv:2: audio .*missing.wav: no such audio file"):
    open_dataset("speech_files", data_dir=str(tmp_path / "tfds"), options=options)
  ds = open_dataset("speech_files", data_dir=str(tmp_path / "tfds2"),
                    options={**options, "skip_bad_lines": True})
  assert ds.split("train").columns()[1] == ["hello", "bye"]
  assert ds.skipped == {"train": {"audio: no such audio file": 1,
                                  "expected source<TAB>target, found no tab": 1}}
