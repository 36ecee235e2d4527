"""Evaluation of a run's splits during training: loss, perplexity, token accuracy, and the task
metrics (WER / PER, WER / CER of transcripts, BLEU / chrF) of greedy decoding.

Decoding is `s2s_jax.search` with greedy options, the search `Model.decode` and decode.py
use, so `decode.py --beam_size=1` on the same checkpoint reproduces these scores.
Shape legend: B batch rows, T target length, V target vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax

from s2s_jax import losses, metrics, parallel
from s2s_jax import search as search_lib
from s2s_jax.data import extended_vocab
from s2s_jax.inputs import Inputs
from s2s_jax.model import ModelConfig, Seq2Seq, batch_source


def eval_step(params: Any, apply_fn: Callable, batch: Mapping[str, jax.Array]
              ) -> dict[str, jax.Array]:
  """Summed (unsmoothed) cross-entropy, token count and correct tokens of a batch."""
  logits_BTV = apply_fn({"params": params}, batch_source(batch), batch["tgt_in"])
  loss_sum, tokens = losses.cross_entropy(logits_BTV, batch["tgt_out"])
  correct, _ = losses.token_accuracy(logits_BTV, batch["tgt_out"])
  return {"loss_sum": loss_sum, "tokens": tokens, "correct": correct}


class Evaluator:
  """Scores of a run's evaluation splits (`inputs.evals`) for given parameters."""

  def __init__(self, config, model_config: ModelConfig, inputs: Inputs,
               par: parallel.DataParallel):
    self.metric, self.inputs, self.par = config.train.eval_metric, inputs, par
    self.decodes = self.metric not in ("loss", "accuracy")  # task metrics need outputs
    self.model_config = model_config
    self.apply_fn = Seq2Seq(model_config).apply
    self.options = search_lib.run_options(config, model_config, evaluation=True)
    self._eval = jax.jit(eval_step, static_argnums=1)

  def _text(self, pipeline, index: int, ids_T) -> str:
    """An output's text; extended-vocabulary ids as the source's own tokens."""
    oovs = pipeline.data.oovs[index] if pipeline.data.oovs else ()
    return extended_vocab.decode(self.inputs.target_tokenizer, ids_T, oovs)

  def __call__(self, params: Any, split: str) -> dict[str, float]:
    """{loss, perplexity, accuracy} and, when the metric is a task metric (`decodes`), the task
    metrics and the `decoded` count."""
    pipeline, references = self.inputs.evals[split]
    sums = {"loss_sum": 0.0, "tokens": 0.0, "correct": 0.0}
    predictions: dict[int, str] = {}
    for local in pipeline.iterator():
      batch, gather = self.par.eval_batch(local)
      for key, value in self._eval(params, self.apply_fn, batch).items():
        sums[key] += float(value)
      if self.decodes:
        src = batch_source(batch)
        out = search_lib.search_jit(params, self.model_config, src, self.options)
        ids_BT = gather(out.tokens_BRT[:, 0])
        for row, index in enumerate(gather(batch["index"])):
          if index >= 0:
            predictions[int(index)] = self._text(pipeline, int(index), ids_BT[row])
    loss = sums["loss_sum"] / max(sums["tokens"], 1)
    result = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
              "accuracy": sums["correct"] / max(sums["tokens"], 1)}
    if self.decodes and predictions:
      order = sorted(predictions)
      result.update(metrics.task_scores(self.metric, [predictions[i] for i in order],
                                        [references[i] for i in order]))
      result["decoded"] = len(order)
    return result
