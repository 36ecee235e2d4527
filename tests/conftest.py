"""Test setup: 8 fake CPU devices (for data-parallel tests), set before jax is imported; and a
guard that no test imports TensorFlow."""

import os
import sys

import pytest

_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()


@pytest.fixture(autouse=True)
def _no_tensorflow():
  """The project must run without TensorFlow: no test may import it, even indirectly."""
  yield
  assert "tensorflow" not in sys.modules, "a test imported tensorflow"
