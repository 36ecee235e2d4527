"""README.md and docs/ stay true: their Python examples run, and README's test command is what
CI runs."""

import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
  # The walkthrough's blocks form one script: tests/test_walkthrough.py runs them in order.
  pages = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md")
                                       if p.name != "walkthrough.md")]
  return [block for page in pages
          for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]


def _run(code: str) -> dict:
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
  return namespace


def test_readme_data_example_runs_and_gives_token_batches():
  (code,) = [block for block in _python_blocks() if "s2s_jax.data" in block]
  namespace = _run(code)
  batch, train = namespace["batch"], namespace["train"]
  assert batch["src"].shape in {(rows, length) for rows, length in train.bucket_shapes}
  assert train.stats.num_kept == 100 and namespace["state"] == {"next_index": 1}


@pytest.mark.slow
def test_readme_model_example_runs_and_gives_a_finite_loss():
  (code,) = [block for block in _python_blocks() if "Seq2Seq(" in block]
  namespace = _run(code)
  assert np.isfinite(namespace["loss_sum"] / namespace["num_tokens"])
  assert namespace["step_logits"].shape == (2, 120)


def test_ci_runs_the_test_command_the_readme_documents():
  ci = (ROOT / ".ci" / "run").read_text()
  readme = (ROOT / "README.md").read_text()
  (command,) = [line for line in ci.splitlines() if line.startswith("python -m pytest")]
  assert command == "python -m pytest -q -n 2"
  assert f"```bash\n{command}\n```" in readme
