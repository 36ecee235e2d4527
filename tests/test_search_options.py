"""Search options are declared once: decode.py's search flags are `SearchOptions`' fields, a run's
defaults come from `search.run_options`, and `SearchOptions.limit` is the one output-length
formula for the static length and the per-sentence limits alike."""

import dataclasses
import importlib.util
import pathlib
import sys
import typing

import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags

from s2s_jax import ModelConfig, cli, search
from s2s_jax.search import SearchOptions

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEXT = ModelConfig(src_vocab_size=10, tgt_vocab_size=10)
AUDIO = ModelConfig(src_vocab_size=0, tgt_vocab_size=10, source="audio")


def _decode_cli():
  """decode.py as a module (its flags go to absl's global FLAGS, so it is loaded once)."""
  if "decode_cli" not in sys.modules:
    spec = importlib.util.spec_from_file_location("decode_cli", ROOT / "decode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["decode_cli"] = module
  return sys.modules["decode_cli"]


def test_decode_py_has_one_flag_per_search_option_with_its_type_default_and_help():
  _decode_cli()
  types = typing.get_type_hints(SearchOptions)
  for field in dataclasses.fields(SearchOptions):
    flag = flags.FLAGS[field.name]
    assert flag.default == field.default and type(flag.default) is types[field.name], field.name
    assert flag.help.endswith(field.metadata["help"]) and field.metadata["help"], field.name
    choices = field.metadata["choices"]
    assert (sorted(flag.parser.enum_values) if choices else None) == (
        sorted(choices) if choices else None), field.name
  assert flags.FLAGS["method"].parser.enum_values == list(search.METHODS)


def test_only_the_search_flags_given_replace_the_runs_defaults():
  values = flags.FlagValues()
  cli.define_flags(SearchOptions, values)
  values(["decode.py", "--beam_size=3", "--method=greedy", "--alpha=0"])
  given = cli.given_flags(SearchOptions, values)
  assert given == {"beam_size": 3, "method": "greedy", "alpha": 0.0}
  speech_run = {"train": {"max_decode_length_factor": 0.3}}
  opts = search.with_overrides(search.run_options(speech_run, AUDIO), given)
  # An unset --max_len_ratio keeps the speech run's own ratio, not SearchOptions' 2.0.
  assert (opts.method, opts.beam_size, opts.alpha, opts.max_len_ratio) == ("greedy", 3, 0.0, 0.3)
  with pytest.raises(flags.IllegalFlagValueError):
    values(["decode.py", "--length_penalty=wu"])


def test_run_options_are_the_search_defaults_the_speech_ratio_and_greedy_evaluation():
  run = {"train": {"max_decode_length_factor": 1.5}}
  assert search.run_options(run, TEXT) == SearchOptions()
  assert search.run_options({}, AUDIO) == SearchOptions(max_len_ratio=0.25)
  assert search.run_options(run, AUDIO) == SearchOptions(max_len_ratio=1.5)
  assert search.run_options(run, (TEXT, TEXT), evaluation=True) == SearchOptions(
      method="greedy", max_len_ratio=1.5, max_len_offset=10, max_len=1 << 16)


@pytest.mark.parametrize("ratio", [0.25, 0.3, 1 / 3, 1.5, 2.0, 0.7])
def test_the_static_output_length_is_the_per_sentence_limit_of_the_longest_input(ratio):
  opts = SearchOptions(max_len_ratio=ratio, max_len_offset=3, max_len=200)
  units = np.arange(0, 400, dtype=np.int32)
  on_device = np.asarray(opts.limit(jnp.asarray(units)))
  on_host = np.array([opts.limit(int(u)) for u in units])
  np.testing.assert_array_equal(on_device, on_host)
  # The formula itself, in float64 where float32 rounding cannot matter (far from integers).
  exact = np.minimum(np.ceil(ratio * units) + 3, 200)
  far = np.abs(ratio * units - np.round(ratio * units)) > 1e-3
  np.testing.assert_array_equal(on_host[far], exact[far])
  assert on_host[0] == 3 and on_host.max() == min(200, exact.max())
  # A padded token batch: its static length is the limit of a row filling the padding.
  src = np.zeros((2, 9), np.int32)
  src[0, :9], src[1, :3] = 5, 5
  assert search.output_length(TEXT, opts, src) == opts.limit(8)
  row_limits = np.asarray(opts.limit(search.source_units(TEXT, jnp.asarray(src))))
  assert row_limits.tolist() == [opts.limit(8), opts.limit(2)]
