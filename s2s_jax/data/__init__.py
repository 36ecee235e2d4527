"""Data: tfds datasets read without TensorFlow, tokenizers, and the grain input pipeline.

  ds = open_dataset("cmudict", data_dir=...)            # or "parallel_text", or a tfds name
  sources, targets = ds.split("train").columns()
  src_tok, tgt_tok = get_or_train_tokenizers(workdir + "/tokenizers", TokenizerSpec("char"),
                                             TokenizerSpec("word"), sources, targets)
  data = TokenizedSplit.build(zip(sources, targets), src_tok, tgt_tok)
  batches = Pipeline(data, BatchingConfig(max_tokens=4096), shuffle=True, seed=0).iterator()
"""

import importlib

from s2s_jax.data.textfiles import InputError
from s2s_jax.data.tokenizers import (
    SentencePieceTokenizer,
    Tokenizer,
    TokenizerSpec,
    VocabTokenizer,
    get_or_train_tokenizers,
    load_tokenizers,
)

__all__ = [
    "Batch", "BatchingConfig", "Dataset", "InputError", "Pipeline", "PipelineStats",
    "SentencePieceTokenizer", "TextPairs", "TokenizedSplit", "Tokenizer", "TokenizerSpec",
    "VocabTokenizer", "get_or_train_tokenizers", "load_tokenizers", "open_dataset",
]

# tensorflow_datasets and grain are imported on first use of what needs them, so that decoding,
# and the model and train-step code that imports this package, run where they are not installed
# (the benchmarks' GPU image) and start without their import time.
_LAZY = {name: "datasets" for name in ("Dataset", "TextPairs", "open_dataset")} | {
    name: "pipeline" for name in ("Batch", "BatchingConfig", "Pipeline", "PipelineStats",
                                  "TokenizedSplit")}


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(f"s2s_jax.data.{_LAZY[name]}"), name)
  raise AttributeError(f"module 's2s_jax.data' has no attribute {name!r}")
