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
  frames = pipeline.frames(np.array([len(a) for a in audio]))
  keep = (frames <= 40) & (np.array([len(t) + 1 for t in texts]) <= 8)
  assert pipeline.stats.num_kept == keep.sum()
  assert sum(pipeline.stats.dropped.values()) == len(audio) - keep.sum()
  seen = []
  ds = pipeline.dataset()
  for k in range(pipeline.batches_per_epoch):
    batch = ds[k]
    rows, samples = batch["audio"].shape
    bucket = (samples - FEATURES.frame_length) // FEATURES.hop_length + 1
    assert bucket in CONFIG.bucket_lengths and rows * bucket <= CONFIG.max_tokens
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
