"""TSV lists of real speech corpora for the `speech_files` dataset (audio path<TAB>transcript).

  python benchmarks/data/speech_lists.py speech_commands /data/speech_commands_v0.02 --out=/data/sc
  python benchmarks/data/speech_lists.py librispeech /data/LibriSpeech --out=/data/ls \\
      --splits=train-clean-100,dev-clean,test-clean

Then train with `configs/asr_words.py` and
`--config.data.dataset=speech_files --config.data.options.directory=<out>` (the two configs are in
docs/speech.md). Neither corpus is downloaded here: get them from their publishers.

- Speech Commands (Warden 2018; v0.02: 35 words, one-second WAV clips in one directory per word):
  the corpus's own `validation_list.txt` and `testing_list.txt` pick those splits (they keep each
  speaker in one split); every other clip outside `_background_noise_` is training data. The
  transcript is the word.
- LibriSpeech (Panayotov et al. 2015): each `<speaker>/<chapter>/*.trans.txt` line is
  `<utterance id> <TRANSCRIPT>`; the audio is FLAC, which SciPy cannot read, so each utterance
  needs a WAV file beside its FLAC (`<id>.wav`, e.g. `sox <id>.flac <id>.wav`); missing ones are
  counted and named. Transcripts are lowercased.

A listed path is relative to the TSV file's directory when the audio lies under `--out`, else
absolute. Each run prints what it wrote and what it skipped.
"""

from __future__ import annotations

import argparse
import os
import sys


def _relative(path: str, out: str) -> str:
  rel = os.path.relpath(path, out)
  return path if rel.startswith("..") else rel


def _write(out: str, split: str, rows: list[tuple[str, str]]) -> str:
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, f"{split}.tsv")
  with open(path, "w", encoding="utf-8") as f:
    for audio, text in rows:
      f.write(f"{_relative(os.path.abspath(audio), os.path.abspath(out))}\t{text}\n")
  return path


def speech_commands(root: str, out: str) -> dict[str, int]:
  """train / validation / test TSVs of a Speech Commands directory; returns rows per split."""
  def listed(name):
    with open(os.path.join(root, name), encoding="utf-8") as f:
      return {line.strip() for line in f if line.strip()}

  held_out = {"validation": listed("validation_list.txt"), "test": listed("testing_list.txt")}
  rows = {"train": [], "validation": [], "test": []}
  for word in sorted(os.listdir(root)):
    directory = os.path.join(root, word)
    if word.startswith("_") or not os.path.isdir(directory):
      continue
    for name in sorted(os.listdir(directory)):
      if name.endswith(".wav"):
        clip = f"{word}/{name}"
        split = next((s for s, clips in held_out.items() if clip in clips), "train")
        rows[split].append((os.path.join(directory, name), word))
  for split, split_rows in rows.items():
    _write(out, split, split_rows)
  return {split: len(split_rows) for split, split_rows in rows.items()}


def librispeech(root: str, out: str, splits: list[str]) -> dict[str, int]:
  """One TSV per LibriSpeech split (e.g. train-clean-100) of its utterances with a WAV file."""
  counts = {}
  for split in splits:
    base = os.path.join(root, split)
    if not os.path.isdir(base):
      raise FileNotFoundError(f"{base}: no such LibriSpeech split directory")
    rows, missing = [], []
    for directory, _, files in sorted(os.walk(base)):
      for name in sorted(f for f in files if f.endswith(".trans.txt")):
        with open(os.path.join(directory, name), encoding="utf-8") as f:
          for line in f:
            utterance, _, text = line.strip().partition(" ")
            audio = os.path.join(directory, f"{utterance}.wav")
            (rows if os.path.isfile(audio) else missing).append((audio, text.lower()))
    if missing:
      print(f"{split}: {len(missing)} utterances have no WAV file (e.g. {missing[0][0]}); "
            "convert their FLAC first (sox <id>.flac <id>.wav); left out", file=sys.stderr)
    _write(out, split, rows)
    counts[split] = len(rows)
  return counts


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("corpus", choices=["speech_commands", "librispeech"])
  parser.add_argument("root", help="the corpus's directory (as extracted)")
  parser.add_argument("--out", required=True, help="where to write the TSV files")
  parser.add_argument("--splits", default="train-clean-100,dev-clean,test-clean",
                      help="LibriSpeech splits (comma-separated)")
  args = parser.parse_args(argv)
  if args.corpus == "speech_commands":
    counts = speech_commands(args.root, args.out)
  else:
    counts = librispeech(args.root, args.out, args.splits.split(","))
  print(f"wrote {', '.join(f'{s}.tsv ({n} utterances)' for s, n in counts.items())} to "
        f"{args.out}")


if __name__ == "__main__":
  main()
