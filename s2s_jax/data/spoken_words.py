"""Spoken words: CMUdict words spoken by espeak-ng in many voices, rates and pitches, as a tfds
builder. An offline speech-recognition corpus: nothing is downloaded; espeak-ng (Debian package
`espeak-ng`) renders every utterance while the dataset is prepared.

Each example is one utterance: `audio` (int16 samples at 16 kHz), `text` (the word in lowercase:
the spelling a recognizer writes), `phones` (its first CMUdict pronunciation without stress,
for phone targets), `speaker` (espeak-ng voice + variant), `rate` (words per minute) and
`pitch` (0-99).

Words go to splits by CMUdict's word hash (`cmudict.split_of`: ~90/5/5), and speakers too: test
speakers (`TEST_VOICES` with any variant, and any voice with a `TEST_VARIANTS` variant) speak
only test words, and training speakers speak train and validation words. So the test split
measures unseen words from unseen speakers; validation measures unseen words from known ones.
Each word is spoken `renditions` times, the speaker, rate and pitch of rendition k drawn from a
hash of (word, k): the corpus is the same on every machine with the same espeak-ng.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from s2s_jax.data import cmudict, textfiles, wav

SAMPLE_RATE = 16000
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
          "en-gb-scotland")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
TEST_VOICES = ("en-gb-scotland",)
TEST_VARIANTS = ("m7", "f5")
RATES = (130, 200)  # words per minute, uniform in [low, high]
PITCHES = (25, 75)
_WORD = re.compile(r"^[a-z]{2,}$")


def is_test_speaker(voice: str, variant: str) -> bool:
  return voice in TEST_VOICES or variant in TEST_VARIANTS


def speakers(test: bool) -> list[tuple[str, str]]:
  """(voice, variant) pairs of the test speakers, or of the training ones."""
  return [(v, w) for v in VOICES for w in VARIANTS if is_test_speaker(v, w) == test]


def espeak_path() -> str:
  """The espeak-ng executable; says how to install it when it is missing."""
  path = shutil.which("espeak-ng")
  if path is None:
    raise FileNotFoundError(
        "spoken_words renders its audio with espeak-ng, which is not installed: "
        "`apt-get install espeak-ng` (Debian / Ubuntu; `brew install espeak-ng` on macOS)")
  return path


def rendition(word: str, k: int) -> tuple[str, str, int, int]:
  """(voice, variant, rate, pitch) of the k-th utterance of `word`, from a hash of both."""
  digest = hashlib.sha256(f"{word}/{k}".encode()).digest()
  pool = speakers(test=cmudict.split_of(word) == "test")
  voice, variant = pool[int.from_bytes(digest[:4], "big") % len(pool)]
  rate = RATES[0] + int.from_bytes(digest[4:6], "big") % (RATES[1] - RATES[0] + 1)
  pitch = PITCHES[0] + int.from_bytes(digest[6:8], "big") % (PITCHES[1] - PITCHES[0] + 1)
  return voice, variant, rate, pitch


def speak(word: str, voice: str, variant: str, rate: int, pitch: int) -> np.ndarray:
  """int16 samples at 16 kHz of espeak-ng speaking `word` (it renders at 22,050 Hz)."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "out.wav")
    subprocess.run([espeak_path(), "-w", path, "-v", f"{voice}+{variant}", "-s", str(rate),
                    "-p", str(pitch), word], check=True, capture_output=True)
    return wav.read_wav(path, SAMPLE_RATE)


def _example(job: tuple[str, int, str]) -> tuple[str, dict]:
  word, k, phones = job
  voice, variant, rate, pitch = rendition(word, k)
  return f"{word}/{k}", {"audio": speak(word, voice, variant, rate, pitch), "text": word,
                         "phones": phones, "speaker": f"{voice}+{variant}", "rate": rate,
                         "pitch": pitch}


TARGETS = ("text", "phones")


@dataclasses.dataclass
class SpokenWordsConfig(tfds.core.BuilderConfig):
  """num_words: the first N words (0 = all) of CMUdict's alphabetic words in hash order;
  renditions: utterances per word; dict_path: a cmudict-format file instead of the packaged one;
  num_workers: rendering processes (0 = one per CPU core); target: the feature read as the
  target, 'text' (the spelling) or 'phones' (it does not change the prepared data)."""

  num_words: int = 8000
  renditions: int = 2
  dict_path: str | None = None
  num_workers: int = 0
  target: str = "text"


def make_config(num_words: int = 8000, renditions: int = 2, dict_path: str = "",
                num_workers: int = 0, target: str = "text") -> SpokenWordsConfig:
  """A `SpokenWordsConfig` named after what changes the audio (`w<num_words>-r<renditions>`,
  plus a fingerprint of `dict_path` when given). An option given as "" or None takes its
  default.

  Raises:
    ValueError: an unknown target. textfiles.InputError: `dict_path` does not exist.
  """
  given = {"num_words": num_words, "renditions": renditions, "dict_path": dict_path,
           "num_workers": num_workers, "target": target}
  defaults = inspect.signature(make_config).parameters
  values = {k: defaults[k].default if v in (None, "") else v for k, v in given.items()}
  if values["target"] not in TARGETS:
    raise ValueError(f"spoken_words option target={values['target']!r} is invalid; allowed: "
                     "'text' (the spelling), 'phones'")
  name = f"w{values['num_words']}-r{values['renditions']}"
  if values["dict_path"]:
    values["dict_path"] = textfiles.check_exists(values["dict_path"], "spoken_words dict_path")
    name += "-" + textfiles.fingerprint([values["dict_path"]])[:12]
  return SpokenWordsConfig(name=name, **{**values, "dict_path": values["dict_path"] or None})


class SpokenWords(tfds.core.GeneratorBasedBuilder):
  """CMUdict words spoken by espeak-ng: audio -> spelling (or phones)."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      SpokenWordsConfig(name="default", description="8,000 words, 2 utterances each."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
            "text": tfds.features.Text(),
            "phones": tfds.features.Text(),
            "speaker": tfds.features.Text(),
            "rate": np.int32,
            "pitch": np.int32,
        }),
        supervised_keys=("audio", "text"),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def pair_keys(self) -> dict:
    """The features `open_dataset` reads as source and target, and the audio's rate."""
    return {"source_key": "audio", "target_key": self.builder_config.target,
            "sample_rate": SAMPLE_RATE}

  def words(self) -> dict[str, str]:
    """{word: first pronunciation without stress} of the words this config speaks."""
    cfg = self.builder_config
    entries = cmudict.parse_dict(cfg.dict_path or cmudict.packaged_dict_path(),
                                 keep_stress=False)
    words = sorted((w for w in entries if _WORD.match(w)),
                   key=lambda w: hashlib.sha256(w.encode()).digest())
    return {w: entries[w][0] for w in (words[:cfg.num_words] if cfg.num_words else words)}

  def _split_generators(self, dl_manager):
    del dl_manager  # rendered locally
    espeak_path()  # fail before any work when espeak-ng is missing
    by_split = {split: [] for split in cmudict.SPLITS}
    for word, phones in self.words().items():
      by_split[cmudict.split_of(word)].extend(
          (word, k, phones) for k in range(self.builder_config.renditions))
    self.info.metadata["utterances"] = {s: len(jobs) for s, jobs in by_split.items()}
    return {split: self._generate_examples(jobs) for split, jobs in by_split.items() if jobs}

  def _generate_examples(self, jobs):
    workers = self.builder_config.num_workers or os.cpu_count() or 1
    if workers == 1:
      yield from map(_example, jobs)
      return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      yield from pool.imap(_example, jobs, chunksize=32)


BUILDER = SpokenWords
