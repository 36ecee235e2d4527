"""Test setup: 8 fake CPU devices (for data-parallel tests), set before jax is imported; a guard
that no test imports TensorFlow; a tiny model trained once per session on a copy task; and the
`slow` marker on every test that needs that model (`-m "not slow"` runs the quick tests).

A test is slow when it trains a model or starts a Python process: the ones that use `tiny_run`
are marked here, the others where they are defined.
"""

import os
import random
import sys

import pytest

_FLAGS = {
    "xla_force_host_platform_device_count": "8",
    # The suite's models are tiny: compiling them is most of its time and running them little.
    # XLA:CPU's backend optimization level 0 compiles ~35% faster; every numerical assertion
    # has a tolerance or compares two programs built under the same flags.
    "xla_backend_optimization_level": "0",
}
for _name, _value in _FLAGS.items():
  if _name not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{_name}={_value}".strip()


def pytest_collection_modifyitems(items):
  for item in items:
    if "tiny_run" in getattr(item, "fixturenames", ()):
      item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _no_tensorflow():
  """The project must run without TensorFlow: no test may import it, even indirectly."""
  yield
  assert "tensorflow" not in sys.modules, "a test imported tensorflow"


def _copy_task_dict(path, words: int = 400) -> str:
  """A cmudict-format file whose 'pronunciation' spells the word in capitals: learnable fast."""
  rng = random.Random(0)
  vocab = set()
  while len(vocab) < words:
    vocab.add("".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))))
  path.write_text("".join(f"{w} {' '.join(c.upper() for c in w)}\n" for w in sorted(vocab)))
  return str(path)


@pytest.fixture(scope="session")
def copy_dict(tmp_path_factory) -> str:
  return _copy_task_dict(tmp_path_factory.mktemp("data") / "copy.dict")


@pytest.fixture(scope="session")
def tiny_run(copy_dict, tmp_path_factory):
  """(workdir, final metrics) of configs/tiny.py trained 40 steps on the copy task."""
  from s2s_jax import training
  root = tmp_path_factory.mktemp("tiny_run")
  from configs import tiny
  config = tiny.get_config()
  config.data.options.dict_path = copy_dict
  config.data.data_dir = str(root / "tfds")
  config.train.num_steps = 40
  result = training.train_and_evaluate(config, str(root / "run"))
  return root / "run", result
