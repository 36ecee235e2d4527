"""Spanish-English parallel text from Debian's public-domain Bibles, for configs/bible_es_en.py.

Debian ships SWORD modules: `sword-text-sparv` (Reina-Valera 1909, module spaRV1909eb) and
`sword-text-web` (World English Bible, engWEB2015eb). This script reads their verses with
`pysword` (versification and zText decompression), strips the OSIS markup itself (pysword's
cleaner glues words across removed footnotes and drops the Psalms' canonical titles, which the
Spanish text keeps inside verse 1), aligns the two by reference (OSIS book, chapter, verse), and
splits deterministically by a hash of the reference: about 3% validation, 3% test, the rest train.

  sudo apt-get install sword-text-sparv sword-text-web        # -> /usr/share/sword
  python benchmarks/data/bible.py --out=/tmp/bible
  # or, without root: fetch the .debs and unpack them next to the output
  python benchmarks/data/bible.py --out=/tmp/bible --download

It writes `train.tsv`, `dev.tsv`, `test.tsv` (Spanish<TAB>English, one verse per line, in
canonical order) and `manifest.json` (counts, what was left out and why, module versions).
References present in only one module (the WEB's deuterocanon), verses empty on either side and
verses whose numbering differs between the modules (see `align`) are counted in the manifest,
never silently dropped. The manifest also holds the copy-source baseline (BLEU / chrF of the
Spanish source as the English output) on dev and test.
"""

from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import html
import json
import math
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping

from s2s_jax.files import atomic_write

PACKAGES = {"es": "sword-text-sparv", "en": "sword-text-web"}
MODULES = {"es": "spaRV1909eb", "en": "engWEB2015eb"}
SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}

Ref = tuple[str, int, int]  # (OSIS book, chapter, verse)

# ----------------------------------------------------------------------------- OSIS to text

# Removed with their content: footnotes / cross references, and non-canonical titles (section
# headings an editor added). Canonical titles (Psalm superscriptions) are scripture and stay.
_INNERMOST_NOTE = re.compile(r"<note\b[^>]*?(?:/>|>(?:(?!<note\b).)*?</note>)", re.S)
_TITLE = re.compile(r"<title\b([^>]*?)(?:/>|>(.*?)</title>)", re.S)
# Tags that mark lines, paragraphs and breaks separate words; other tags (<w>, <transChange>,
# <hi>, ...) sit inside running text and vanish.
_BREAKING_TAG = re.compile(r"</?(?:l|lg|lb|p|div|milestone|cb|br|list|item|chapter|verse)\b[^>]*>")
_TAG = re.compile(r"<[^>]+>")
_SPACE_BEFORE_CLOSING = re.compile(r"\s+([,.;:!?)\]»”’])")
_SPACE_AFTER_OPENING = re.compile(r"([(\[«“‘¿¡])\s+")


def osis_to_text(osis: str) -> str:
  """One verse's OSIS markup -> plain text on one line (no tabs or newlines)."""
  text, previous = osis, None
  while text != previous:  # notes can nest: remove the innermost first
    previous, text = text, _INNERMOST_NOTE.sub(" ", text)
  text = _TITLE.sub(
      lambda m: f" {m.group(2)} " if m.group(2) and 'canonical="true"' in m.group(1) else " ",
      text)
  text = _TAG.sub("", _BREAKING_TAG.sub(" ", text))
  text = " ".join(html.unescape(text).split())  # also removes tabs and newlines
  text = _SPACE_BEFORE_CLOSING.sub(r"\1", text)
  return _SPACE_AFTER_OPENING.sub(r"\1", text)


# ----------------------------------------------------------------------------- reading modules


def read_module(sword_dir: str, module: str) -> dict[Ref, str]:
  """Every verse slot of a SWORD Bible module as `{(osis book, chapter, verse): plain text}`."""
  from pysword.modules import SwordModules  # a data-preparation dependency only

  modules = SwordModules(sword_dir)
  found = modules.parse_modules()
  if module not in found:
    raise FileNotFoundError(
        f"SWORD module {module} not found under {sword_dir} (found: {sorted(found) or 'none'}); "
        f"install it with `apt-get install {' '.join(PACKAGES.values())}`, or pass --download "
        "to fetch and unpack the packages without root")
  bible = modules.get_bible_from_module(module)
  verses: dict[Ref, str] = {}
  for books in bible.get_structure().get_books().values():
    for book in books:
      texts = list(bible.get_iter(books=[book.name], clean=False))
      refs = [(book.osis_name, chapter, verse)
              for chapter, length in enumerate(book.chapter_lengths, start=1)
              for verse in range(1, length + 1)]
      if len(texts) != len(refs):
        raise ValueError(f"{module} {book.osis_name}: {len(texts)} verse texts for "
                         f"{len(refs)} references in its versification")
      verses.update((ref, osis_to_text(text)) for ref, text in zip(refs, texts, strict=True))
  return verses


def download_modules(dest: str) -> str:
  """`apt-get download` the two packages and unpack them with `dpkg-deb -x` (no root needed);
  returns the SWORD directory inside `dest`."""
  os.makedirs(dest, exist_ok=True)
  for old in glob.glob(os.path.join(dest, "*.deb")):  # a rerun unpacks only what it fetched
    os.remove(old)
  subprocess.run(["apt-get", "download", *PACKAGES.values()], cwd=dest, check=True)
  for deb in sorted(glob.glob(os.path.join(dest, "*.deb"))):
    subprocess.run(["dpkg-deb", "-x", deb, os.path.join(dest, "root")], check=True)
  return os.path.join(dest, "root", "usr", "share", "sword")


def package_versions(debs_dir: str | None) -> dict[str, str]:
  """Installed (dpkg-query) or downloaded (.deb file name) versions of the packages."""
  versions = {}
  for package in PACKAGES.values():
    if debs_dir:
      found = sorted(glob.glob(os.path.join(debs_dir, f"{package}_*.deb")))
      versions[package] = os.path.basename(found[-1]).split("_")[1] if found else "unknown"
    else:
      try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                              capture_output=True, text=True, check=False)
        versions[package] = done.stdout.strip() or "unknown"
      except OSError:  # no dpkg (modules copied from elsewhere)
        versions[package] = "unknown"
  return versions


# ----------------------------------------------------------------------------- align and split


def split_of(ref: Ref, dev_percent: int = 3, test_percent: int = 3) -> str:
  """'train', 'dev' or 'test' from a hash of the reference: stable across runs and machines."""
  bucket = int(hashlib.sha256(f"{ref[0]}.{ref[1]}.{ref[2]}".encode()).hexdigest(), 16) % 100
  if bucket < test_percent:
    return "test"
  return "dev" if bucket < test_percent + dev_percent else "train"


def align(source: Mapping[Ref, str], target: Mapping[Ref, str], *, max_length_ratio: float = 2.0,
          max_outliers_per_chapter: int = 2) -> tuple[list[tuple[Ref, str, str]], dict[str, int]]:
  """Pairs for the references both sides have, with text on both, in the source's order; and
  the count of everything left out, by reason.

  The modules' verse divisions differ in a few chapters (e.g. Numbers 13 and Judges 14: the
  Reina-Valera shifts verses against the KJV numbering it declares), which pairs a verse with
  its neighbour's translation until the chapter ends. Such pairs show in their lengths: a pair
  whose character-length ratio is more than `max_length_ratio` away from the corpus median is
  left out, and so is every pair of a chapter with more than `max_outliers_per_chapter` of them.
  """
  skipped: collections.Counter[str] = collections.Counter()
  pairs = []
  for ref, src in source.items():
    if ref not in target:
      skipped["only in source"] += 1
      continue
    tgt = target[ref]
    if not src and not tgt:
      skipped["empty on both sides"] += 1
    elif not src:
      skipped["empty source"] += 1
    elif not tgt:
      skipped["empty target"] += 1
    else:
      pairs.append((ref, src, tgt))
  skipped["only in target"] = sum(1 for ref in target if ref not in source)

  log_ratios = [math.log(len(src) / len(tgt)) for _, src, tgt in pairs]
  median = statistics.median(log_ratios) if log_ratios else 0.0
  outlier = [abs(r - median) > math.log(max_length_ratio) for r in log_ratios]
  per_chapter = collections.Counter(ref[:2] for (ref, _, _), bad in zip(pairs, outlier, strict=True)
                                 if bad)
  kept = []
  for (ref, src, tgt), bad in zip(pairs, outlier, strict=True):
    if per_chapter[ref[:2]] > max_outliers_per_chapter:
      skipped["in a chapter with shifted verses"] += 1
    elif bad:
      skipped["length ratio outlier"] += 1
    else:
      kept.append((ref, src, tgt))
  return kept, {reason: n for reason, n in skipped.items() if n}


def write_splits(pairs: Iterable[tuple[Ref, str, str]], out_dir: str, dev_percent: int = 3,
                 test_percent: int = 3) -> dict[str, int]:
  """Writes one TSV per split (atomically: a temporary file renamed into place); returns counts."""
  lines: dict[str, list[str]] = {name: [] for name in SPLIT_FILES}
  for ref, src, tgt in pairs:
    for side in (src, tgt):
      if "\t" in side or "\n" in side or not side:
        raise ValueError(f"{ref}: a side is empty or holds a tab/newline: {side!r}")
    lines[split_of(ref, dev_percent, test_percent)].append(f"{src}\t{tgt}\n")
  for name, file_name in SPLIT_FILES.items():
    atomic_write(os.path.join(out_dir, file_name), "".join(lines[name]).encode("utf-8"))
  return {name: len(split_lines) for name, split_lines in lines.items()}


def copy_baseline(tsv_path: str) -> dict[str, float]:
  """BLEU / chrF of the Spanish source itself as the English translation (names and numbers
  overlap): the floor a translation model must clearly beat."""
  from s2s_jax import metrics

  with open(tsv_path, encoding="utf-8") as f:
    pairs = [line.rstrip("\n").split("\t") for line in f]
  if not pairs:
    return {}
  return metrics.translation_scores([p[0] for p in pairs], [p[1] for p in pairs])


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="directory for the TSV files")
  parser.add_argument("--sword_dir", default="/usr/share/sword",
                      help="SWORD library holding mods.d/ (where apt-get install puts them)")
  parser.add_argument("--download", action="store_true",
                      help="apt-get download + dpkg-deb -x the packages into OUT/debs first")
  parser.add_argument("--dev_percent", type=int, default=3)
  parser.add_argument("--test_percent", type=int, default=3)
  args = parser.parse_args(argv)
  if not (0 <= args.dev_percent and 0 <= args.test_percent
          and args.dev_percent + args.test_percent < 100):
    parser.error("--dev_percent and --test_percent must be >= 0 and leave some training data")

  debs_dir = None
  sword_dir = args.sword_dir
  if args.download:
    debs_dir = os.path.join(args.out, "debs")
    sword_dir = download_modules(debs_dir)
  try:
    source, target = (read_module(sword_dir, MODULES[lang]) for lang in ("es", "en"))
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  pairs, skipped = align(source, target)
  counts = write_splits(pairs, args.out, args.dev_percent, args.test_percent)
  words = {lang: sum(len(p[i].split()) for p in pairs) for i, lang in ((1, "es"), (2, "en"))}
  copy = {split: copy_baseline(os.path.join(args.out, SPLIT_FILES[split]))
          for split in ("dev", "test")}
  manifest = {"source": MODULES["es"], "target": MODULES["en"],
              "packages": package_versions(debs_dir), "pairs": counts, "words": words,
              "skipped": skipped, "copy_baseline": copy,
              "dev_percent": args.dev_percent,
              "test_percent": args.test_percent}
  atomic_write(os.path.join(args.out, "manifest.json"),
               (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
  print(json.dumps(manifest, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
