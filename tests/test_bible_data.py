"""benchmarks/data/bible.py: OSIS cleaning, reading a SWORD zText module, alignment and splits.

The module test writes a tiny zText module by hand (the index layout of the SWORD format: a
verse record [block, start, size] per slot of the versification, zlib blocks), so the reader is
checked against verse texts placed at known references.
"""

import importlib.util
import os
import struct
import zlib

import pytest

_spec = importlib.util.spec_from_file_location(
    "bible", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "data", "bible.py"))
bible = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bible)


@pytest.mark.parametrize(("osis", "text"), [
    # a footnote between two words (the WEB's markup has no space there)
    ('<w lemma="strong:H0430">God</w><note placement="foot"><reference>1:1 </reference>The Hebrew '
     'word is “Elohim”.</note><w lemma="strong:H1254">created</w> the earth. ',
     "God created the earth."),
    ("the land<note n='a'>or, earth</note>.", "the land."),  # a footnote before punctuation
    ('<title canonical="true" type="psalm">A Psalm by David.</title> <l level="1"/>Yahweh, how',
     "A Psalm by David. Yahweh, how"),  # canonical titles are scripture
    ('<title type="x-section">The Creation</title>In the beginning', "In the beginning"),
    ('<div type="x-milestone" subType="x-preverse" sID="pv1"/>Abram &amp; Sarai\tleft\n',
     "Abram & Sarai left"),
    ("¡ <w>OH</w> Jehová , cuánto! ", "¡OH Jehová, cuánto!"),
    ("<note>only a note</note>", ""),
    ('<l level="1">Blessed is the man,</l><l level="2">who walks</l>',
     "Blessed is the man, who walks"),
    ("the end<lb/>Next", "the end Next"),  # line breaks separate words
    ('a <note type="x">outer <note>inner</note> tail</note> b', "a b"),  # nested notes
    ('<title type="x-gen"/>Hear<title canonical="true">A Psalm</title> me', "Hear A Psalm me"),
    ('a<note n="1"/> b', "a b"),  # a self-closing note
])
def test_osis_to_text_strips_markup_and_footnotes_and_keeps_word_boundaries(osis, text):
  assert bible.osis_to_text(osis) == text


def write_ztext_module(root, name, verses_by_index):
  """A SWORD zText module holding `verses_by_index` {slot index: text} in one zlib block."""
  data_dir = os.path.join(root, "modules", "texts", "ztext", name.lower())
  os.makedirs(data_dir)
  os.makedirs(os.path.join(root, "mods.d"), exist_ok=True)
  block, records = b"", []
  for index in range(max(verses_by_index) + 1):
    raw = verses_by_index.get(index, "").encode("utf-8")
    records.append(struct.pack("<IIH", 0, len(block), len(raw)))
    block += raw
  compressed = zlib.compress(block)
  with open(os.path.join(data_dir, "ot.bzv"), "wb") as f:
    f.write(b"".join(records))
  with open(os.path.join(data_dir, "ot.bzs"), "wb") as f:
    f.write(struct.pack("<III", 0, len(compressed), len(block)))
  with open(os.path.join(data_dir, "ot.bzz"), "wb") as f:
    f.write(compressed)
  with open(os.path.join(root, "mods.d", f"{name.lower()}.conf"), "w") as f:
    f.write(f"[{name}]\nDataPath=./modules/texts/ztext/{name.lower()}/\nModDrv=zText\n"
            "SourceType=OSIS\nEncoding=UTF-8\nCompressType=ZIP\nBlockType=BOOK\n"
            "Versification=KJV\n")


def test_read_module_maps_every_slot_to_its_reference(tmp_path):
  # KJV slot layout: 2 testament headings, then per book a heading, per chapter a heading, and
  # the verses. Genesis 1 has 31 verses: Gen 1:1 is slot 4, Gen 2:1 is slot 4 + 31 + 1 = 36.
  write_ztext_module(str(tmp_path), "TestBible", {
      4: "In the beginning<note>fn</note> God", 5: "<w>The earth</w> was", 36: "Thus the heavens"})
  verses = bible.read_module(str(tmp_path), "TestBible")
  assert verses[("Gen", 1, 1)] == "In the beginning God"
  assert verses[("Gen", 1, 2)] == "The earth was"
  assert verses[("Gen", 1, 3)] == ""
  assert verses[("Gen", 2, 1)] == "Thus the heavens"
  assert verses[("Mal", 4, 6)] == ""  # every slot of the versification is present
  assert len(verses) == 23145  # the KJV Old Testament


def test_read_module_names_the_missing_module_and_how_to_install_it(tmp_path):
  write_ztext_module(str(tmp_path), "Other", {4: "x"})
  with pytest.raises(FileNotFoundError,
                     match=r"spaRV1909eb not found.*`apt-get install sword-text-sparv sword-te"):
    bible.read_module(str(tmp_path), "spaRV1909eb")


def _verses(chapter_texts):
  return {("Gen", c, v + 1): t for c, texts in chapter_texts.items() for v, t in enumerate(texts)}


def test_align_counts_every_left_out_reference_by_reason():
  normal = "a verse of ordinary length"
  source = _verses({1: [normal, "", "", normal, normal, "x" * 200], 2: [normal] * 4})
  target = _verses({1: [normal, "", normal, "", normal, normal], 2: [normal] * 3})
  target[("Gen", 9, 1)] = normal
  pairs, skipped = bible.align(source, target, max_length_ratio=2.0, max_outliers_per_chapter=2)
  assert [ref for ref, _, _ in pairs] == [("Gen", 1, 1), ("Gen", 1, 5), ("Gen", 2, 1),
                                          ("Gen", 2, 2), ("Gen", 2, 3)]
  assert skipped == {"empty on both sides": 1, "empty source": 1, "empty target": 1,
                     "length ratio outlier": 1, "only in source": 1, "only in target": 1}


def test_align_drops_a_chapter_whose_verses_are_shifted_against_the_other_side():
  # Chapter 1's source is shifted by one verse from verse 2 on: lengths stop matching.
  lengths = [20, 80, 25, 90, 30, 85, 22, 70]
  target = _verses({1: ["w" * n for n in lengths], 2: ["w" * n for n in lengths]})
  source = _verses({1: ["w" * lengths[0]] + ["w" * n for n in lengths[:-1]],
                    2: ["w" * n for n in lengths]})
  pairs, skipped = bible.align(source, target, max_length_ratio=2.0, max_outliers_per_chapter=2)
  assert {ref[1] for ref, _, _ in pairs} == {2}
  assert skipped == {"in a chapter with shifted verses": 8}


def test_splits_are_stable_disjoint_and_near_the_requested_sizes(tmp_path):
  refs = [("Gen", c, v) for c in range(1, 101) for v in range(1, 101)]
  splits = [bible.split_of(ref) for ref in refs]
  assert splits == [bible.split_of(ref) for ref in refs]  # deterministic
  for name in ("dev", "test"):
    assert 0.02 < splits.count(name) / len(refs) < 0.04
  pairs = [(ref, f"es {i}", f"en {i}") for i, ref in enumerate(refs)]
  counts = bible.write_splits(pairs, str(tmp_path))
  assert counts == {name: splits.count(name) for name in ("train", "dev", "test")}
  written = {}
  for name, file_name in bible.SPLIT_FILES.items():
    with open(tmp_path / file_name, encoding="utf-8") as f:
      written[name] = [line.rstrip("\n").split("\t") for line in f]
  assert sum(len(lines) for lines in written.values()) == len(refs)
  assert all(len(fields) == 2 for lines in written.values() for fields in lines)
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary files left


def test_write_splits_refuses_a_side_with_a_tab(tmp_path):
  with pytest.raises(ValueError, match=r"\('Gen', 1, 1\).*tab"):
    bible.write_splits([(("Gen", 1, 1), "uno\tdos", "one")], str(tmp_path))
