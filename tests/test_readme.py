"""README.md stays true: its Python example runs, and its test command is what CI runs."""

import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_example_runs_and_gives_a_finite_loss():
  readme = (ROOT / "README.md").read_text()
  (code,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
  assert np.isfinite(namespace["loss_sum"] / namespace["num_tokens"])
  assert namespace["step_logits"].shape == (2, 120)


def test_ci_runs_the_test_command_the_readme_documents():
  ci = (ROOT / ".ci" / "run").read_text()
  readme = (ROOT / "README.md").read_text()
  assert "python -m pytest -q\n" in ci
  assert "python -m pytest -q\n" in readme
