"""Data: tfds datasets read without TensorFlow, tokenizers, and the grain input pipeline.

  ds = open_dataset("cmudict", data_dir=...)            # or "parallel_text", or a tfds name
  sources, targets = ds.split("train").columns()
  src_tok, tgt_tok = get_or_train_tokenizers(workdir + "/tokenizers", TokenizerSpec("char"),
                                             TokenizerSpec("word"), sources, targets)
  data = TokenizedSplit.build(zip(sources, targets), src_tok, tgt_tok)
  batches = Pipeline(data, BatchingConfig(max_tokens=4096), shuffle=True, seed=0).iterator()
"""

from s2s_jax.data.datasets import Dataset, TextPairs, open_dataset
from s2s_jax.data.pipeline import (
    Batch,
    BatchingConfig,
    Pipeline,
    PipelineStats,
    TokenizedSplit,
)
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
