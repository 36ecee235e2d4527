"""The debian_descriptions corpus: apt's Translation-en format parsed, near-duplicates grouped
into one split, counts reported, read through open_dataset; ROUGE against hand-computed values.
Every fixture is written by its test, in apt's format (lz4-compressed like apt's own files)."""

import lz4.frame
import pytest

from s2s_jax import metrics
from s2s_jax.data import datasets, textfiles
from s2s_jax.data import debian_descriptions as dd


def record(package: str, synopsis: str, *paragraphs: str) -> str:
  body = "\n .\n".join("\n".join(f" {line}" for line in p.split("\n")) for p in paragraphs)
  return (f"Package: {package}\nDescription-md5: 0123\nDescription-en: {synopsis}\n"
          + (body + "\n" if body else "") + "\n")


LIB = ("libfoo is a library for reading foo files quickly and\nsafely in every language.",
       "This package contains the development files.")


def fixture_index() -> str:
  records = [
      record("libfoo-dev", "foo file library (development files)", *LIB),
      record("libfoo-doc", "foo file library (documentation)", LIB[0],
             "This package contains the documentation."),
      record("foo-tools", "foo file library (tools)",  # same stem, another source: same group
             "Command line tools that read and convert foo files for the shell."),
      record("libfoo1", "foo file library (development files)", *LIB),  # a duplicate pair
      record("empty", "a package without a long description"),
      record("short", "a short one", "Too short."),
      record("verbatim", "lists kept",
             "A tool with a list of features:\n  * fast reading\n  * small memory use"),
  ]
  # A generic synopsis shared by more than MAX_STEM_GROUP packages ties nothing together.
  records += [record(f"old{i}", "transitional package",
                     f"This is a transitional package for the old name number {i} of a tool.")
              for i in range(dd.MAX_STEM_GROUP + 5)]
  return "".join(records)


@pytest.fixture
def lists_dir(tmp_path):
  path = tmp_path / "deb.debian.org_debian_dists_stable_main_i18n_Translation-en.lz4"
  path.write_bytes(lz4.frame.compress(fixture_index().encode()))
  return tmp_path


def test_records_parse_into_synopsis_and_paragraphs_joined_on_one_line(lists_dir):
  text = dd.read_index(str(next(lists_dir.iterdir())))
  entries = list(dd.parse_index(text))
  assert len(entries) == 7 + dd.MAX_STEM_GROUP + 5
  first = entries[0]
  assert (first.package, first.synopsis) == ("libfoo-dev", "foo file library (development files)")
  assert first.paragraphs == (
      "libfoo is a library for reading foo files quickly and safely in every language.",
      "This package contains the development files.")
  assert entries[4].paragraphs == ()
  assert entries[6].paragraphs == (
      "A tool with a list of features: * fast reading * small memory use",)


def test_near_duplicates_share_a_split_and_every_drop_and_merge_is_counted(lists_dir):
  entries = list(dd.parse_index(dd.read_index(str(next(lists_dir.iterdir())))))
  pairs = dd.build_pairs(entries, whole_text=False, min_source_words=5)
  where = {source: split for split, sources in pairs.splits.items() for source in sources}
  # The three foo packages (two sources tied by their synopsis stem) land in one split.
  foo_sources = [s for s in where if "foo" in s]
  assert len(foo_sources) == 2 and len({where[s] for s in foo_sources}) == 1
  lib = pairs.splits[where[LIB[0].replace("\n", " ")]][LIB[0].replace("\n", " ")]
  assert lib == ["foo file library (development files)", "foo file library (documentation)"]
  counts = pairs.counts
  assert counts["dropped: no long description"] == 1
  assert counts["dropped: source under 5 words"] == 1
  assert counts["merged: same source and synopsis"] == 1
  # foo group + verbatim + each transitional package alone (their stem is too common).
  assert counts["groups"] == 1 + 1 + dd.MAX_STEM_GROUP + 5
  assert sum(counts[f"{s} pairs"] for s in dd.SPLITS) == 3 + 1 + dd.MAX_STEM_GROUP + 5
  assert len({where[s] for s in where if s.startswith("This is a transitional")}) > 1


def test_whole_text_joins_every_paragraph():
  entries = list(dd.parse_index(record("libfoo-dev", "foo", *LIB)))
  pairs = dd.build_pairs(entries, whole_text=True, min_source_words=5)
  (sources,) = [s for s in pairs.splits.values() if s]
  assert list(sources) == [" ".join(" ".join(p.split()) for p in LIB)]


def test_a_missing_index_names_the_apt_command_and_a_bad_record_its_line(tmp_path):
  with pytest.raises(FileNotFoundError,
                     match=r"apt-get update -o Acquire::Languages=en"):
    dd.make_config(lists_dir=str(tmp_path))
  with pytest.raises(textfiles.InputError, match=r"x.txt:6: expected 'Field: value'"):
    list(dd.parse_index(record("a", "b", "c d e f g") + "garbage line\n", "x.txt"))
  with pytest.raises(textfiles.InputError, match=r"x.txt:1: a record without Package"):
    list(dd.parse_index("Description-en: x\n y\n", "x.txt"))


@pytest.mark.slow
def test_the_builder_reads_through_open_dataset_with_references_and_metadata(
    lists_dir, tmp_path):
  dataset = datasets.open_dataset("debian_descriptions", data_dir=str(tmp_path / "tfds"),
                                  options={"lists_dir": str(lists_dir)})
  metadata = dataset.builder.info.metadata
  assert metadata["counts"]["merged: same source and synopsis"] == 1
  assert metadata["fingerprint"] == textfiles.fingerprint(sorted(
      str(p) for p in lists_dir.iterdir() if p.is_file()))
  seen = 0
  for split in dataset.builder.info.splits:
    for example in dataset.builder.as_data_source(split):
      seen += 1
      assert example["target"].decode() in [r.decode() for r in example["references"]]
  assert seen == sum(metadata["counts"][f"{s} pairs"] for s in ("train",)) + sum(
      metadata["counts"][f"{s} sources"] for s in ("validation", "test"))


def test_rouge_matches_hand_computed_f1_and_takes_the_best_reference():
  scores = metrics.rouge_scores(["the cat sat"], [["the cat sat on the mat"]])
  # ROUGE-1: P 3/3, R 3/6; ROUGE-2: P 2/2, R 2/5; ROUGE-L: LCS 3, as ROUGE-1.
  assert scores["rouge1"] == pytest.approx(100 * 2 * 1 * 0.5 / 1.5)
  assert scores["rouge2"] == pytest.approx(100 * 2 * 1 * 0.4 / 1.4)
  assert scores["rougeL"] == pytest.approx(scores["rouge1"])
  best = metrics.rouge_scores(["the cat sat"], [["a dog ran", "the cat sat"]])
  assert best == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
  assert metrics.task_scores("rougeL", ["Cats sitting"], [["cat sits"]])["rouge1"] == 100.0


def test_the_repeated_trigram_rate_counts_repeats_within_each_output_only():
  # "a b c a b c": 4 trigrams, of which the last (a b c) repeats the first; the second output
  # repeats the first output's trigram, which does not count.
  assert metrics.repeated_ngram_rate(["a b c a b c", "a b c", "x y"]) == pytest.approx(100 / 5)
  assert metrics.repeated_ngram_rate(["a a a a"]) == pytest.approx(100 * 1 / 2)
  assert metrics.repeated_ngram_rate([]) == 0.0
  assert metrics.task_scores("rouge1", ["a b c a b c"], [["a b c"]])["repeated_trigrams"] == 25.0
