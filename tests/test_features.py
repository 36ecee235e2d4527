"""Acoustic features against NumPy written from the definitions: the mel filterbank, framing,
window, power spectrum and normalization; exact lengths under padding; SpecAugment's masks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import features
from s2s_jax.features import FeatureConfig

CFG = FeatureConfig(sample_rate=8000, n_fft=256, num_mels=24, fmin=50.0)


def _mel(hz: float) -> float:
  return 2595.0 * math.log10(1.0 + hz / 700.0)


def _hz(mel: float) -> float:
  return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _reference_filterbank(cfg: FeatureConfig) -> np.ndarray:
  """Triangles on the mel scale, one bin and one filter at a time."""
  top = cfg.fmax or cfg.sample_rate / 2
  lo, hi = _mel(cfg.fmin), _mel(top)
  edges = [_hz(lo + (hi - lo) * i / (cfg.num_mels + 1)) for i in range(cfg.num_mels + 2)]
  out = np.zeros((cfg.n_fft // 2 + 1, cfg.num_mels))
  for k in range(cfg.n_fft // 2 + 1):
    f = k * cfg.sample_rate / cfg.n_fft
    for m in range(cfg.num_mels):
      left, center, right = edges[m], edges[m + 1], edges[m + 2]
      if left < f <= center:
        out[k, m] = (f - left) / (center - left)
      elif center < f < right:
        out[k, m] = (right - f) / (right - center)
  return out


def _reference_features(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
  """One utterance (float samples), frame by frame in float64."""
  x = np.concatenate([x[:1], x[1:] - cfg.preemphasis * x[:-1]])
  L, hop = cfg.frame_length, cfg.hop_length
  window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / L) for n in range(L)])
  rows = []
  for start in range(0, len(x) - L + 1, hop):
    spectrum = np.fft.rfft(x[start:start + L] * window, n=cfg.n_fft)
    rows.append(np.log(np.maximum(np.abs(spectrum) ** 2 @ _reference_filterbank(cfg),
                                  cfg.log_floor)))
  feats = np.array(rows)
  return (feats - feats.mean(0)) / np.sqrt(feats.var(0) + 1e-5)


def _waveforms(lengths, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(max(lengths)) / CFG.sample_rate
  out = np.zeros((len(lengths), max(lengths)), np.float32)
  for i, n in enumerate(lengths):  # a tone, a chirp-ish second tone and noise: non-flat spectra
    f0 = 200 + 150 * i
    out[i, :n] = (0.4 * np.sin(2 * np.pi * f0 * t[:n]) + 0.2 * np.sin(2 * np.pi * 3.1 * f0 * t[:n])
                  + 0.05 * rng.standard_normal(n))
  return out


def test_mel_matrix_equals_triangles_computed_one_bin_at_a_time():
  np.testing.assert_allclose(features.mel_matrix(CFG), _reference_filterbank(CFG), atol=1e-6)
  wide = FeatureConfig()  # the defaults: 16 kHz, 80 bins, n_fft 512
  np.testing.assert_allclose(features.mel_matrix(wide), _reference_filterbank(wide), atol=1e-6)
  assert (features.mel_matrix(wide).sum(0) > 0).all()  # no empty filter at 80 bins


def test_frame_counts_are_the_frames_that_fit_inside_each_utterance():
  assert (CFG.frame_length, CFG.hop_length) == (200, 80)
  counts = features.num_frames(jnp.array([0, 199, 200, 279, 280, 1000]), CFG)
  assert counts.tolist() == [0, 0, 1, 1, 2, 11]


def test_log_mel_equals_the_numpy_definition_per_utterance():
  lengths = [1000, 1737, 2400]
  waves = _waveforms(lengths)
  feats, frames = jax.jit(features.log_mel, static_argnums=2)(waves, jnp.array(lengths), CFG)
  assert feats.shape == (3, 1 + (2400 - 200) // 80, 24)
  for i, n in enumerate(lengths):
    want = _reference_features(waves[i, :n].astype(np.float64), CFG)
    assert int(frames[i]) == len(want)
    np.testing.assert_allclose(feats[i, :len(want)], want, atol=2e-3)
    assert not np.asarray(feats[i, len(want):]).any()  # padding frames are zeros


def test_int16_input_reads_as_samples_over_32768():
  waves = _waveforms([1200])
  pcm = np.round(waves * 32767).astype(np.int16)
  from_pcm, _ = features.log_mel(pcm, jnp.array([1200]), CFG)
  from_float, _ = features.log_mel(pcm.astype(np.float32) / 32768.0, jnp.array([1200]), CFG)
  np.testing.assert_allclose(from_pcm, from_float, atol=1e-5)


def test_padding_and_batch_mates_leave_an_utterances_features_unchanged():
  lengths = [900, 2000]
  waves = _waveforms(lengths, seed=3)
  waves[0, 900:] = 0.7  # whatever lies past the end must not leak into the frames
  batched, _ = features.log_mel(waves, jnp.array(lengths), CFG)
  alone, frames = features.log_mel(waves[:1, :900], jnp.array([900]), CFG)
  n = int(frames[0])
  np.testing.assert_allclose(batched[0, :n], alone[0], atol=1e-5)


def test_spec_augment_masks_bands_inside_each_utterance_and_follows_the_rng():
  B, T, F = 4, 60, 24
  feats = jnp.ones((B, T, F))
  frames = jnp.array([60, 45, 30, 10])
  out = np.asarray(features.spec_augment(feats, frames, jax.random.PRNGKey(0), freq_masks=2,
                                         freq_width=5, time_masks=2, time_width=8,
                                         max_time_fraction=0.2))
  for b in range(B):
    masked_bins = np.flatnonzero((out[b] == 0).all(axis=0))
    masked_frames = np.flatnonzero((out[b] == 0).all(axis=1))
    assert len(masked_bins) <= 2 * 5
    assert len(masked_frames) <= 2 * min(8, int(0.2 * int(frames[b])))
    assert (masked_frames < int(frames[b])).all()  # time masks stay inside the utterance
    # Every zero is explained by a masked bin or a masked frame.
    zeros = out[b] == 0
    explained = np.zeros_like(zeros)
    explained[:, masked_bins] = True
    explained[masked_frames, :] = True
    assert (zeros <= explained).all()
  again = features.spec_augment(feats, frames, jax.random.PRNGKey(0), freq_masks=2,
                                freq_width=5, time_masks=2, time_width=8, max_time_fraction=0.2)
  other = features.spec_augment(feats, frames, jax.random.PRNGKey(1), freq_masks=2,
                                freq_width=5, time_masks=2, time_width=8, max_time_fraction=0.2)
  np.testing.assert_array_equal(out, again)
  assert (np.asarray(other) != out).any()
  assert (out == 0).any()  # some mask was drawn with a width above zero


def test_bad_feature_configs_are_named():
  with pytest.raises(ValueError, match="more than n_fft=256"):
    FeatureConfig(sample_rate=16000, n_fft=256)  # 400-sample frames
  with pytest.raises(ValueError, match="fmin"):
    FeatureConfig(fmin=9000.0)
