"""One pattern for the datasets built from local files: every `LOCAL_BUILDERS` module exposes
`make_config(**options)` (its options and their defaults) and `BUILDER`, and `open_dataset` has
one path for all of them, which a builder defined in this test file alone also takes."""

import dataclasses
import inspect
import os
import sys

import pytest
import tensorflow_datasets as tfds

from s2s_jax.data import datasets, open_dataset, textfiles


@dataclasses.dataclass
class ShoutConfig(tfds.core.BuilderConfig):
  path: str = ""
  exclaim: bool = False


def make_config(path: str, *, exclaim: bool = False) -> ShoutConfig:
  """A toy local builder: each line of `path` -> its upper case (with '!' when `exclaim`)."""
  path = textfiles.check_exists(path, "shout path")
  digest = textfiles.fingerprint([path], salt=repr(exclaim))[:16]
  return ShoutConfig(name=f"shout-{digest}", path=path, exclaim=exclaim)


class Shout(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = []

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
        {"quiet": tfds.features.Text(), "loud": tfds.features.Text()}), disable_shuffling=True)

  def pair_keys(self):
    return {"source_key": "quiet", "target_key": "loud"}

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    mark = "!" if self.builder_config.exclaim else ""
    for number, line in textfiles.read_lines(self.builder_config.path, "shout file"):
      yield number, {"quiet": line, "loud": line.upper() + mark}


BUILDER = Shout


@pytest.fixture
def shout(monkeypatch):
  monkeypatch.setitem(datasets.LOCAL_BUILDERS, "shout",
                      datasets.LocalBuilder(__name__, "this test's make_config"))
  assert sys.modules[__name__].BUILDER is Shout


def test_every_local_builder_module_has_make_config_and_a_builder_that_names_its_keys():
  for name, local in datasets.LOCAL_BUILDERS.items():
    module = local.load()
    assert callable(module.make_config), name
    assert issubclass(module.BUILDER, tfds.core.GeneratorBasedBuilder), name
    assert callable(module.BUILDER.pair_keys), name
    for option in inspect.signature(module.make_config).parameters.values():
      assert option.kind in (option.POSITIONAL_OR_KEYWORD, option.KEYWORD_ONLY), (name, option)


def test_a_builder_defined_in_a_test_file_opens_through_the_one_local_path(shout, tmp_path):
  (tmp_path / "in.txt").write_text("hello\nworld\n")
  ds = open_dataset("shout", data_dir=str(tmp_path / "tfds"),
                    options={"path": str(tmp_path / "in.txt"), "exclaim": True})
  assert list(zip(*ds.split("train").columns(), strict=True)) == [("hello", "HELLO!"),
                                                                   ("world", "WORLD!")]
  # The options, and which are required, come from make_config's signature.
  with pytest.raises(ValueError, match=r"dataset 'shout' takes the options \['path', "
                                       r"'exclaim'\] \(data.options\); it needs \['path'\].*"
                                       "Start from this test's make_config"):
    open_dataset("shout", data_dir=str(tmp_path / "tfds"))
  with pytest.raises(ValueError, match=r"options \['loudness'\] are not among them"):
    open_dataset("shout", data_dir=str(tmp_path / "tfds"),
                 options={"path": str(tmp_path / "in.txt"), "loudness": 3})
  with pytest.raises(ValueError, match="dataset 'shout' has no variants"):
    open_dataset("shout/quiet", data_dir=str(tmp_path / "tfds"),
                 options={"path": str(tmp_path / "in.txt")})
  # Empty options meant for another dataset are dropped, so switching datasets alone works.
  quiet = open_dataset("shout", data_dir=str(tmp_path / "tfds"),
                       options={"path": str(tmp_path / "in.txt"), "dict_path": ""})
  assert quiet.split("train")[0] == ("hello", "HELLO")
  assert os.path.isdir(tmp_path / "tfds" / "shout")


def test_cmudict_variants_are_configs_named_by_the_files_fingerprint(tmp_path):
  from s2s_jax.data import cmudict
  path = tmp_path / "d.dict"
  path.write_text("cat K AE1 T\n")
  config = cmudict.make_config("no_stress", dict_path=str(path))
  assert config.name.startswith("no_stress-") and not config.keep_stress
  path.write_text("cat K AE1 T\ndog D AO1 G\n")
  assert cmudict.make_config("no_stress", dict_path=str(path)).name != config.name
  with pytest.raises(ValueError, match=r"cmudict config 'stressed' is unknown; choose one of "
                                       r"\['stress', 'no_stress'\]"):
    cmudict.make_config("stressed")
