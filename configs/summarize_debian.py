"""Summarization of Debian package descriptions (the offline `debian_descriptions` corpus,
docs/data.md): a description's first paragraph -> its one-line synopsis, with shared
SentencePiece subwords and copy attention (pointer-generator, See et al. 2017).

  apt-get update -o Acquire::Languages=en       # fetches apt's English descriptions (root)
  python train.py --config=configs/summarize_debian.py --workdir=/tmp/sum
  python decode.py --workdir=/tmp/sum --split=test              # ROUGE-1/2/L on stderr

Without copy attention: `--config.model.copy_attention=False`. The extractive baselines are
`python benchmarks/summarize_lead.py` (test ROUGE-L 31.2 for the first 12 words).
Sized for the 2 CPU cores: at most 55 minutes of training, early stopping on validation ROUGE-L.
"""

import ml_collections

from configs import g2p


def get_config() -> ml_collections.ConfigDict:
  c = g2p.shared_config()
  c.data.dataset = "debian_descriptions"
  c.data.options = ml_collections.ConfigDict(
      {"lists_dir": "", "whole_text": False, "min_source_words": 5})
  spm = {"kind": "sentencepiece", "vocab_size": 8000, "model_type": "bpe"}
  c.data.source_tokenizer = ml_collections.ConfigDict(spm)
  c.data.target_tokenizer = ml_collections.ConfigDict(spm)
  c.data.shared_vocab = True  # copy attention reads source ids as output ids
  c.data.max_tokens = 4096
  c.data.eval_max_tokens = 8192
  c.data.bucket_lengths = (16, 24, 32, 48, 64, 96, 128)
  c.data.max_target_length = 32  # synopses: median 6 words

  c.model.embed_size = 128
  c.model.encoder_hidden_size = 192
  c.model.hidden_size = 256
  c.model.encoder_layers = 2
  c.model.decoder_layers = 1
  c.model.attention = "luong"
  c.model.attention_score = "general"
  c.model.input_feeding = False
  c.model.tie_embeddings = True
  c.model.dropout = 0.2
  c.model.copy_attention = True

  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 300
  c.train.num_steps = 12_000
  c.train.max_minutes = 55.0
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.train.early_stopping_patience = 3
  c.train.eval_metric = "rougeL"
  c.train.max_decode_length_factor = 0.5  # synopses are a fraction of their sources
  return c
