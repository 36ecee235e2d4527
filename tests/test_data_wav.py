"""Waveforms from users: WAV files of any PCM type, channel count and rate become mono int16 at
the model's rate (int16 at the same rate exactly), arrays are checked, bad files are named."""

import numpy as np
import pytest
from scipy.io import wavfile

from s2s_jax.data import InputError, wav


def _tone(rate: int, seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
  t = np.arange(int(rate * seconds)) / rate
  return 0.5 * np.sin(2 * np.pi * hz * t)


def test_int16_wav_at_the_models_rate_reads_back_exactly(tmp_path):
  samples = np.random.default_rng(0).integers(-32768, 32767, 8000).astype(np.int16)
  wavfile.write(tmp_path / "a.wav", 16000, samples)
  np.testing.assert_array_equal(wav.read_wav(tmp_path / "a.wav", 16000), samples)


@pytest.mark.parametrize("dtype", ["int32", "uint8", "float32"])
def test_other_pcm_types_and_stereo_become_the_same_int16_signal(tmp_path, dtype):
  x = _tone(16000)
  scaled = {"int32": np.round(x * 2**31).astype(np.int32),
            "uint8": np.round(128 + x * 127).astype(np.uint8),
            "float32": x.astype(np.float32)}[dtype]
  wavfile.write(tmp_path / "a.wav", 16000, np.stack([scaled, scaled], axis=1))  # stereo
  got = wav.read_wav(tmp_path / "a.wav", 16000)
  assert got.dtype == np.int16 and got.shape == x.shape
  tolerance = 32768 / 127 if dtype == "uint8" else 2  # 8-bit PCM has 8 bits of precision
  np.testing.assert_allclose(got, x * 32768, atol=tolerance)


def test_other_rates_are_resampled_keeping_length_and_pitch(tmp_path):
  wavfile.write(tmp_path / "a.wav", 8000, np.round(_tone(8000) * 32767).astype(np.int16))
  got = wav.read_wav(tmp_path / "a.wav", 16000)
  assert len(got) == 8000  # 0.5 s at 16 kHz
  spectrum = np.abs(np.fft.rfft(got.astype(np.float64)))
  assert np.argmax(spectrum) * 16000 / len(got) == pytest.approx(440.0, abs=2.0)


def test_bad_files_and_arrays_are_named(tmp_path):
  with pytest.raises(InputError, match="nope.wav: no such audio file"):
    wav.read_wav(tmp_path / "nope.wav", 16000)
  (tmp_path / "text.wav").write_text("not audio")
  with pytest.raises(InputError, match="text.wav: not a readable WAV file"):
    wav.read_wav(tmp_path / "text.wav", 16000)
  with pytest.raises(ValueError, match="one-dimensional"):
    wav.as_int16(np.zeros((2, 10), np.int16))
  with pytest.raises(ValueError, match="int16 PCM or floats"):
    wav.as_int16(np.zeros(10, np.int64))
  np.testing.assert_array_equal(wav.as_int16(np.array([0.0, 1.0, -1.0])), [0, 32767, -32767])
