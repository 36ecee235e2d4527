"""docs/walkthrough.md stays true: its code blocks run, in order, as one script (they hold their
own checks: padding invariance of the encoder's final state, the masked loss, attention weights),
and the trained models in it learn the task with every parameter taking part."""

import pathlib
import re

import numpy as np
import pytest

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "walkthrough.md"


@pytest.mark.slow
def test_walkthrough_code_runs_in_order_and_its_models_learn_to_reverse():
  blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
  assert len(blocks) >= 8, "the walkthrough lost its code blocks"
  namespace = {}
  for i, code in enumerate(blocks):
    exec(compile(code, f"{PAGE.name} block {i + 1}", "exec"), namespace)  # noqa: S102
  assert namespace["final_loss"] < 1.0 and namespace["att_loss"] < 1.0
  # The attention model reads the source backwards: output letter t attends most to the
  # source letter n - 1 - t (allow one miss).
  reads_BT = np.argmax(namespace["w_BTS"][0, :8], axis=-1)
  assert np.sum(reads_BT == np.arange(7, -1, -1)) >= 7, reads_BT
  # Gradients reached every parameter: training moved each one from its initial value.
  s2s_jax, jax = namespace["s2s_jax"], namespace["jax"]
  initial = s2s_jax.Seq2Seq(namespace["att_cfg"]).init(
      jax.random.key(0), method=s2s_jax.Seq2Seq.create_params)["params"]
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), initial,
                       namespace["att_params"])
  assert all(jax.tree.leaves(moved)), moved
