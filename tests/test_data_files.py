"""parallel_text: the builder on small fixtures; each bad input names its file and line."""

import pathlib
import pickle

import pytest

from s2s_jax.data import InputError, open_dataset
from s2s_jax.data import parallel_text as pt

TSV = "Hallo Welt\thello world\n  Guten Morgen \tgood morning\nDanke\tthanks\n"


def _write(directory: pathlib.Path, name: str, content: str | bytes) -> str:
  path = directory / name
  path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
  return name


def test_tsv_builder_gives_every_line_of_every_split_stripped(tmp_path):
  _write(tmp_path, "train.tsv", TSV)
  _write(tmp_path, "dev.tsv", "a\tb\n")
  ds = open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=dict(
      directory=str(tmp_path), files={"train": "train.tsv", "validation": "dev.tsv"}))
  assert sorted(ds.splits) == ["train", "validation"]
  train = ds.split("train")
  assert len(train) == 3 and len(ds.split("validation")) == 1
  assert list(zip(*train.columns(), strict=True)) == [  # file order, stripped
      ("Hallo Welt", "hello world"), ("Guten Morgen", "good morning"), ("Danke", "thanks")]
  assert train.references(0) == [train[0][1]]


def test_aligned_files_builder_pairs_lines_in_order(tmp_path):
  _write(tmp_path, "train.de", "eins\nzwei\ndrei\n")
  _write(tmp_path, "train.en", "one\ntwo\nthree\n")
  ds = open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=dict(
      directory=str(tmp_path), files={"train": ["train.de", "train.en"]}))
  assert list(zip(*ds.split("train").columns(), strict=True)) == [
      ("eins", "one"), ("zwei", "two"), ("drei", "three")]


def test_edited_files_are_prepared_anew_not_read_stale(tmp_path):
  _write(tmp_path, "train.tsv", TSV)
  options = dict(directory=str(tmp_path), files={"train": "train.tsv"})
  first = open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=options)
  _write(tmp_path, "train.tsv", TSV + "Bitte\tplease\n")
  second = open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=options)
  assert len(first.split("train")) == 3 and len(second.split("train")) == 4


BAD_TSV = [
    ("no tab", b"a\tb\nno tab here\n", 2, "found no tab"),
    ("two tabs", b"a\tb\nx\ty\tz\n", 2, "found 2 tabs"),
    ("empty source", b"a\tb\nc\td\n \te\n", 3, "empty source side"),
    ("empty target", b"a\t\n", 1, "empty target side"),
    ("not utf-8", b"a\tb\nc\td\ne\t\xff\xfe\n", 3, "not valid UTF-8"),
]


@pytest.mark.parametrize(("content", "line", "message"), [c[1:] for c in BAD_TSV],
                         ids=[c[0] for c in BAD_TSV])
def test_bad_tsv_line_raises_naming_file_and_line(tmp_path, content, line, message):
  path = str(tmp_path / "train.tsv")
  _write(tmp_path, "train.tsv", content)
  with pytest.raises(InputError, match=message) as error:
    list(pt.read_tsv(path))
  assert (error.value.path, error.value.line) == (path, line)
  assert f"{path}:{line}:" in str(error.value)


@pytest.mark.parametrize(("source", "target", "bad_file", "line", "message"), [
    (b"a\nb\nc\n", b"x\ny\n", "train.en", 3, "ends at line 2"),
    (b"a\nb\n", b"x\ny\nz\n", "train.de", 3, "ends at line 2"),
    (b"a\n\n", b"x\ny\n", "train.de", 2, "empty source side"),
    (b"a\nb\n", b"x\n  \n", "train.en", 2, "empty target side"),
    (b"a\nb\xc3\n", b"x\ny\n", "train.de", 2, "not valid UTF-8"),
], ids=["target shorter", "source shorter", "empty source", "empty target", "not utf-8"])
def test_bad_aligned_files_raise_naming_file_and_line(tmp_path, source, target, bad_file, line,
                                                      message):
  _write(tmp_path, "train.de", source)
  _write(tmp_path, "train.en", target)
  with pytest.raises(InputError, match=message) as error:
    list(pt.read_aligned(str(tmp_path / "train.de"), str(tmp_path / "train.en")))
  assert (error.value.path, error.value.line) == (str(tmp_path / bad_file), line)


def test_missing_file_is_named_with_its_config_field(tmp_path):
  _write(tmp_path, "train.tsv", TSV)
  with pytest.raises(InputError, match=r"dev\.tsv: parallel_text files\['validation'\]"):
    open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=dict(
        directory=str(tmp_path), files={"train": "train.tsv", "validation": "dev.tsv"}))


def test_builder_reports_a_bad_line_with_file_and_line(tmp_path):
  path = tmp_path / "train.tsv"
  _write(tmp_path, "train.tsv", TSV + "oops\n")
  with pytest.raises(InputError, match=f"{path}:4: expected source<TAB>target, found no tab"):
    open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"),
                 options=dict(directory=str(tmp_path), files={"train": "train.tsv"}))


def test_skip_bad_lines_counts_each_skipped_line_by_reason(tmp_path):
  good = ["a\tb", "c\td", "e\tf"]
  lines = [good[0], "no tab", good[1], "x\t", "\ty", "1\t2\t3", good[2]]
  _write(tmp_path, "train.tsv", ("\n".join(lines) + "\n").encode() + b"bad\t\xff\n")
  ds = open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=dict(
      directory=str(tmp_path), files={"train": "train.tsv"}, skip_bad_lines=True))
  assert list(zip(*ds.split("train").columns(), strict=True)) == [
      tuple(g.split("\t")) for g in good]
  assert ds.skipped["train"] == {
      "expected source<TAB>target, found no tab": 1, "empty target side": 1,
      "empty source side": 1, "expected source<TAB>target, found 2 tabs": 1,
      "not valid UTF-8": 1}


def test_skip_bad_lines_keeps_aligned_files_aligned_after_a_bad_line(tmp_path):
  _write(tmp_path, "s", b"a\n\xff\nc\n\ne\n")
  _write(tmp_path, "t", b"A\nB\nC\nD\nE\n")
  skipped = pt.textfiles.SkipCounter()
  rows = list(pt.read_aligned(str(tmp_path / "s"), str(tmp_path / "t"), skipped))
  assert rows == [(1, "a", "A"), (3, "c", "C"), (5, "e", "E")]
  assert skipped.total == 2


def test_mismatched_aligned_files_are_not_skippable(tmp_path):
  _write(tmp_path, "s", "a\nb\n")
  _write(tmp_path, "t", "A\n")
  with pytest.raises(InputError, match="ends at line 1"):
    list(pt.read_aligned(str(tmp_path / "s"), str(tmp_path / "t"), pt.textfiles.SkipCounter()))


def test_config_name_follows_contents_and_split_layout_not_spelling(tmp_path):
  _write(tmp_path, "a.tsv", TSV)
  _write(tmp_path, "b.de", "x\n")
  _write(tmp_path, "b.en", "y\n")
  name = lambda files: pt.make_config(str(tmp_path), files).name  # noqa: E731
  base = name({"train": "a.tsv", "test": ["b.de", "b.en"]})
  assert base == name({"test": ("b.de", "b.en"), "train": "a.tsv"})
  assert base != name({"validation": "a.tsv", "test": ["b.de", "b.en"]})
  assert base != name({"train": "a.tsv", "test": ["b.en", "b.de"]})
  with pytest.raises(ValueError, match="must be letters"):
    pt.make_config(str(tmp_path), {"train": "a.tsv"}, name="my corpus")


def test_bom_and_crlf_line_endings_are_not_data(tmp_path):
  _write(tmp_path, "train.tsv", b"\xef\xbb\xbfHallo\thello\r\nDanke\tthanks\r\n")
  assert list(pt.read_tsv(str(tmp_path / "train.tsv"))) == [
      (1, "Hallo", "hello"), (2, "Danke", "thanks")]


def test_aligned_file_error_surfaces_through_open_dataset(tmp_path):
  _write(tmp_path, "train.de", "eins\nzwei\n")
  _write(tmp_path, "train.en", "one\n")
  with pytest.raises(InputError, match=r"train\.en:2: file ends at line 1"):
    open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=dict(
        directory=str(tmp_path), files={"train": ["train.de", "train.en"]}))


def test_input_error_survives_pickling_with_its_location():
  error = pickle.loads(pickle.dumps(InputError("a.tsv", 7, "empty source side")))
  assert (error.path, error.line, str(error)) == ("a.tsv", 7, "a.tsv:7: empty source side")


def test_skip_counts_are_kept_when_a_prepared_dataset_is_opened_again(tmp_path):
  _write(tmp_path, "train.tsv", TSV + "oops\n")
  options = dict(directory=str(tmp_path), files={"train": "train.tsv"}, skip_bad_lines=True)
  open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=options)
  again = open_dataset("parallel_text", data_dir=str(tmp_path / "tfds"), options=options)
  assert again.skipped == {"train": {"expected source<TAB>target, found no tab": 1}}
