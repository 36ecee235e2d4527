"""Acoustic features on device: log-mel filterbanks and SpecAugment, as pure JAX functions meant to
run inside the jitted train / eval step, so the input pipeline only carries waveforms.

The front end of attention-based speech recognition (Chorowski et al. 2015; Chan et al. 2016,
"Listen, Attend and Spell"): pre-emphasis, 25 ms Hann-windowed frames every 10 ms, the power
spectrum, a bank of triangular filters on the (HTK) mel scale, the log, and mean / variance
normalization of each mel bin over the utterance's own frames. SpecAugment (Park et al. 2019)
then masks random bands of mel bins and of frames during training.

Lengths are exact: an utterance padded with anything after its last sample gives the same
features on its own frames (frames are only those that fit inside the utterance, and padding
frames come out as zeros).

Shape legend: B utterances, N samples, T frames, L samples per frame, K FFT bins
(n_fft // 2 + 1), F mel bins.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """Log-mel filterbank settings (hashable: a static argument of jitted functions)."""

  sample_rate: int = 16000
  frame_ms: float = 25.0
  hop_ms: float = 10.0
  n_fft: int = 512
  num_mels: int = 80
  fmin: float = 20.0
  fmax: float = 0.0  # 0 = sample_rate / 2
  preemphasis: float = 0.97  # 0 = none
  log_floor: float = 1e-6  # log(max(energy, floor)): silence stays finite
  normalize: bool = True  # per-utterance mean / variance of every mel bin

  def __post_init__(self):
    if self.frame_length > self.n_fft:
      raise ValueError(f"FeatureConfig: a {self.frame_ms} ms frame is {self.frame_length} "
                       f"samples at {self.sample_rate} Hz, more than n_fft={self.n_fft}")
    if not 0 <= self.fmin < self.top_frequency <= self.sample_rate / 2:
      raise ValueError(f"FeatureConfig: need 0 <= fmin ({self.fmin}) < fmax "
                       f"({self.top_frequency}) <= sample_rate / 2 ({self.sample_rate / 2})")
    if self.num_mels < 1 or self.hop_length < 1:
      raise ValueError(f"FeatureConfig: num_mels={self.num_mels} and hop_ms={self.hop_ms} must "
                       "give at least one bin and one sample")

  @property
  def frame_length(self) -> int:
    return round(self.sample_rate * self.frame_ms / 1000)

  @property
  def hop_length(self) -> int:
    return round(self.sample_rate * self.hop_ms / 1000)

  @property
  def top_frequency(self) -> float:
    return self.fmax or self.sample_rate / 2


def hz_to_mel(hz):
  """The HTK mel scale: 2595 log10(1 + f / 700)."""
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel):
  return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_matrix(cfg: FeatureConfig) -> np.ndarray:
  """Triangular filters [K, F]: filter f rises linearly from edge f to edge f + 1 and falls to
  edge f + 2, with F + 2 edges equally spaced on the mel scale from fmin to fmax, evaluated at
  the FFT bin frequencies k * sample_rate / n_fft."""
  edges_hz = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.top_frequency),
                                   cfg.num_mels + 2))
  bins_hz = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
  left, center, right = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
  rising = (bins_hz[:, None] - left) / (center - left)
  falling = (right - bins_hz[:, None]) / (right - center)
  return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def num_frames(num_samples_B: jax.Array, cfg: FeatureConfig) -> jax.Array:
  """Frames that fit inside each utterance: 1 + (samples - frame_length) // hop, or 0."""
  n = jnp.asarray(num_samples_B)
  return jnp.where(n >= cfg.frame_length, 1 + (n - cfg.frame_length) // cfg.hop_length, 0)


def log_mel(waveform_BN: jax.Array, num_samples_B: jax.Array, cfg: FeatureConfig
            ) -> tuple[jax.Array, jax.Array]:
  """(features [B, T, F] float32, frames per utterance [B]) of padded waveforms.

  `waveform_BN` is int16 PCM (scaled by 1 / 32768) or float in [-1, 1]; T is the frame count of
  the padded length N, and frames past an utterance's own count are zeros.
  """
  x_BN = waveform_BN.astype(jnp.float32)
  if jnp.issubdtype(waveform_BN.dtype, jnp.integer):
    x_BN = x_BN / 32768.0
  if cfg.preemphasis:  # y[n] = x[n] - a x[n - 1]; causal, so padding never leaks in
    x_BN = jnp.concatenate([x_BN[:, :1], x_BN[:, 1:] - cfg.preemphasis * x_BN[:, :-1]], axis=1)
  N, L, hop = x_BN.shape[1], cfg.frame_length, cfg.hop_length
  T = max(0, 1 + (N - L) // hop)
  index_TL = hop * np.arange(T)[:, None] + np.arange(L)[None, :]
  window_L = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(L) / L)  # periodic Hann
  frames_BTL = x_BN[:, index_TL] * window_L.astype(np.float32)
  power_BTK = jnp.abs(jnp.fft.rfft(frames_BTL, n=cfg.n_fft, axis=-1)) ** 2
  feats_BTF = jnp.log(jnp.maximum(power_BTK @ mel_matrix(cfg), cfg.log_floor))
  frames_B = num_frames(num_samples_B, cfg)
  live_BT1 = (jnp.arange(T)[None, :] < frames_B[:, None])[..., None]
  if cfg.normalize:
    count_B11 = jnp.maximum(frames_B, 1)[:, None, None].astype(jnp.float32)
    mean_B1F = jnp.sum(jnp.where(live_BT1, feats_BTF, 0.0), axis=1, keepdims=True) / count_B11
    centered_BTF = jnp.where(live_BT1, feats_BTF - mean_B1F, 0.0)
    var_B1F = jnp.sum(centered_BTF ** 2, axis=1, keepdims=True) / count_B11
    feats_BTF = centered_BTF * jax.lax.rsqrt(var_B1F + 1e-5)
  return jnp.where(live_BT1, feats_BTF, 0.0), frames_B


def spec_augment(feats_BTF: jax.Array, frames_B: jax.Array, rng: jax.Array, *,
                 freq_masks: int = 2, freq_width: int = 27, time_masks: int = 2,
                 time_width: int = 40, max_time_fraction: float = 0.2) -> jax.Array:
  """SpecAugment's masks (without time warping): each utterance gets `freq_masks` bands of
  width uniform in [0, freq_width] mel bins and `time_masks` bands of width uniform in
  [0, min(time_width, max_time_fraction * its frames)] frames inside its own frames, set to 0
  (the mean of normalized features). Deterministic in `rng`; pure."""
  B, T, F = feats_BTF.shape
  k_fw, k_fs, k_tw, k_ts = jax.random.split(rng, 4)
  keep_BTF = jnp.ones((B, T, F), bool)
  if freq_masks:
    width_BM = jax.random.randint(k_fw, (B, freq_masks), 0, min(freq_width, F) + 1)
    start_BM = (jax.random.uniform(k_fs, (B, freq_masks)) * (F - width_BM + 1)).astype(jnp.int32)
    bins_F = jnp.arange(F)
    band_BMF = ((bins_F >= start_BM[..., None]) & (bins_F < (start_BM + width_BM)[..., None]))
    keep_BTF &= ~jnp.any(band_BMF, axis=1)[:, None, :]
  if time_masks:
    limit_B = jnp.minimum(time_width, jnp.floor(max_time_fraction * frames_B)).astype(jnp.int32)
    width_BM = (jax.random.uniform(k_tw, (B, time_masks)) * (limit_B[:, None] + 1)).astype(
        jnp.int32)
    room_BM = jnp.maximum(frames_B[:, None] - width_BM + 1, 1)
    start_BM = (jax.random.uniform(k_ts, (B, time_masks)) * room_BM).astype(jnp.int32)
    steps_T = jnp.arange(T)
    band_BMT = ((steps_T >= start_BM[..., None]) & (steps_T < (start_BM + width_BM)[..., None]))
    keep_BTF &= ~jnp.any(band_BMT, axis=1)[:, :, None]
  return jnp.where(keep_BTF, feats_BTF, 0.0)
