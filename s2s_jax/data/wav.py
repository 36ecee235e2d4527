"""Waveforms for speech models: WAV files read, resampled and converted to int16 PCM.

The models read int16 samples at their own sample rate (`ModelConfig.sample_rate`); these helpers
turn what a user has (a WAV file at any rate, 8-32 bit or float, mono or multichannel, or an
array of floats in [-1, 1]) into that. Imports only NumPy and SciPy, so decoding stays light.
"""

from __future__ import annotations

import os

import numpy as np

from s2s_jax.data.textfiles import InputError


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
  """int16 samples at `rate_out` from samples (int16-scaled) at `rate_in`: polyphase filtering
  (SciPy) when the rates differ, rounding and clipping to int16 either way."""
  x = np.asarray(samples, np.float64)
  if rate_in != rate_out:
    from scipy import signal

    divisor = np.gcd(rate_out, rate_in)
    x = signal.resample_poly(x, rate_out // divisor, rate_in // divisor)
  return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def as_int16(waveform: np.ndarray, what: str = "waveform") -> np.ndarray:
  """A mono waveform as int16 PCM: int16 as is, floats in [-1, 1] scaled by 32767.

  Raises:
    ValueError: not one-dimensional, another integer type, or floats outside [-1, 1] (naming
      `what`).
  """
  x = np.asarray(waveform)
  if x.ndim != 1:
    raise ValueError(f"{what}: a waveform is one-dimensional (samples), got shape {x.shape}")
  if x.dtype == np.int16:
    return x
  if np.issubdtype(x.dtype, np.floating):
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not np.isfinite(peak) or peak > 1.0:
      raise ValueError(f"{what}: float samples must be in [-1, 1] (peak {peak:.3g}); give int16 "
                       "PCM or scale the waveform")
    return np.round(x * 32767.0).astype(np.int16)
  raise ValueError(f"{what}: samples of type {x.dtype}; give int16 PCM or floats in [-1, 1]")


def read_wav(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
  """The samples of a WAV file as mono int16 at `sample_rate` Hz: channels are averaged,
  8/24/32-bit and float PCM converted, other rates resampled.

  Raises:
    InputError: the file is missing or not a WAV file SciPy reads (naming the file).
  """
  from scipy.io import wavfile

  try:
    rate, data = wavfile.read(os.fspath(path))
  except FileNotFoundError:
    raise InputError(path, 0, "no such audio file") from None
  except (ValueError, OSError) as e:
    raise InputError(path, 0, f"not a readable WAV file ({e})") from None
  x = np.asarray(data)
  # To the int16 scale: int16 PCM stays exact; int32 is shifted down, float and 8-bit scaled.
  if np.issubdtype(x.dtype, np.signedinteger):
    x = x * (32768.0 / -float(np.iinfo(x.dtype).min))
  elif np.issubdtype(x.dtype, np.unsignedinteger):  # 8-bit PCM is unsigned, centred on 128
    half = (float(np.iinfo(x.dtype).max) + 1) / 2
    x = (x - half) * (32768.0 / half)
  else:
    x = np.asarray(x, np.float64) * 32768.0
  if x.ndim == 2:
    x = x.mean(axis=1)
  return resample(x, int(rate), sample_rate)
