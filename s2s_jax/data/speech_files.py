"""The user's own speech corpus, from WAV files listed in TSV files, as a tfds builder.

Each split is one TSV file of `audio path<TAB>transcript` lines; a relative audio path is read
from the TSV file's directory. The audio is read with `wav.read_wav` (any PCM type, channel count
and sample rate) and stored as int16 at the config's `sample_rate`. A line without exactly one
tab, with an empty side, or whose audio is missing or not a readable WAV file raises
`textfiles.InputError` naming the TSV file and line (and the audio file), unless
`skip_bad_lines=True`: then it is skipped, counted per reason, logged, and recorded in
`info.metadata["skipped"]`. Examples keep file order.

The config name carries a fingerprint of the TSV files, the sample rate and every audio file's
name and size, so an edited list or a re-recorded file is prepared anew.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping

import numpy as np
import tensorflow_datasets as tfds

from s2s_jax.data import parallel_text, textfiles, wav

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SpeechFilesConfig(tfds.core.BuilderConfig):
  """directory: where the TSV files are; files: {split: TSV file name}; sample_rate: Hz."""

  directory: str = ""
  files: Mapping[str, str] = dataclasses.field(default_factory=dict)
  sample_rate: int = 16000
  skip_bad_lines: bool = False


def _audio_path(tsv: str, path: str) -> str:
  return os.path.join(os.path.dirname(os.path.abspath(tsv)), path)


def make_config(directory: str, files: Mapping[str, str], *, name: str = "speech",
                sample_rate: int = 16000, skip_bad_lines: bool = False) -> SpeechFilesConfig:
  """A `SpeechFilesConfig` named `name` plus a fingerprint of the lists and their audio files.

  Raises:
    textfiles.InputError: a TSV file is missing (the message names the split).
  """
  if not files:
    raise ValueError("speech_files needs at least one split, e.g. files={'train': 'train.tsv'}")
  if not re.fullmatch(r"[\w-]+", name):
    raise ValueError(f"speech_files name={name!r} must be letters, digits, '_' or '-'")
  if not isinstance(sample_rate, int) or sample_rate < 1000:
    raise ValueError(f"speech_files sample_rate={sample_rate!r} must be an int >= 1000 (Hz)")
  tsvs, sizes = [], []
  for split, file in sorted(files.items()):
    tsv = textfiles.check_exists(os.path.join(directory, file), f"speech_files files[{split!r}]")
    tsvs.append(tsv)
    for _, line in textfiles.read_lines(tsv, "speech_files TSV", textfiles.SkipCounter()):
      if line is None:  # not UTF-8: reported (or counted) while preparing
        continue
      audio = _audio_path(tsv, line.split("\t", 1)[0])
      sizes.append(f"{audio}:{os.path.getsize(audio) if os.path.isfile(audio) else -1}")
  salt = repr((sorted(files.items()), sample_rate, sizes))
  digest = textfiles.fingerprint(tsvs, salt=salt)
  return SpeechFilesConfig(
      name=f"{name}-{digest[:16]}{'-skip' if skip_bad_lines else ''}",
      directory=os.path.abspath(directory), files=dict(files), sample_rate=sample_rate,
      skip_bad_lines=skip_bad_lines, description=f"Speech from {directory}")


class SpeechFiles(tfds.core.GeneratorBasedBuilder):
  """A speech corpus from WAV files listed in TSV files; build configs with `make_config`."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = []

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
            "text": tfds.features.Text(),
            "path": tfds.features.Text(),
        }),
        supervised_keys=("audio", "text"),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # example i is the i-th good line
    )

  def pair_keys(self) -> dict:
    """The features `open_dataset` reads as source and target, and the audio's rate."""
    return {"source_key": "audio", "target_key": "text",
            "sample_rate": self.builder_config.sample_rate}

  def _split_generators(self, dl_manager):
    del dl_manager  # local data only
    config = self.builder_config
    self.info.metadata["skipped"] = {}
    return {split: self._generate_examples(split, os.path.join(config.directory, file))
            for split, file in config.files.items()}

  def _generate_examples(self, split, tsv):
    config = self.builder_config
    skipped = textfiles.SkipCounter() if config.skip_bad_lines else None
    for number, path, text in parallel_text.read_tsv(tsv, skipped):
      try:
        audio = wav.read_wav(_audio_path(tsv, path), config.sample_rate)
      except textfiles.InputError as e:
        textfiles.reject(textfiles.InputError(tsv, number, f"audio {e.path}: {e.message}",
                                              reason=f"audio: {e.message.split(' (')[0]}"),
                         skipped)
        continue
      yield number, {"audio": audio, "text": text, "path": path}
    if skipped is not None:
      self.info.metadata["skipped"][split] = skipped.as_dict()
      if skipped.total:
        log.warning("speech_files %s: skipped %d bad lines %s; first: %s", split, skipped.total,
                    skipped.as_dict(), "; ".join(skipped.examples))


BUILDER = SpeechFiles
