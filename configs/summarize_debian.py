"""Summarization of Debian package descriptions (the offline `debian_descriptions` corpus,
docs/summarization.md): a description's first paragraph -> its one-line synopsis, with shared
SentencePiece subwords, copy attention (pointer-generator) and coverage (See et al. 2017).

  apt-get update -o Acquire::Languages=en       # fetches apt's English descriptions (root)
  python train.py --config=configs/summarize_debian.py --workdir=/tmp/sum
  python decode.py --workdir=/tmp/sum --split=test              # ROUGE-1/2/L on stderr

Test ROUGE-1/2/L 43.3 / 23.7 / 40.0 with greedy search at 2,000 steps (lead-12: 36.1 / 17.3 /
31.2); without coverage (`--config.model.coverage=False --config.train.coverage_loss_weight=0`)
42.8 / 22.9 / 39.7 with 4.6x the repeated trigrams; without copy attention as well 15.4 / 4.3 /
14.4 (docs/summarization.md). Sized for the 2 CPU cores: 2,000 steps, capped at 55 minutes.
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
  # With subwords that cover every training character no test source token is <unk>, so the
  # extended vocabulary (model.copy_oov_slots) has nothing to copy here; word vocabularies need it.
  c.model.coverage = True

  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 300
  c.train.coverage_loss_weight = 1.0  # See et al.'s lambda
  c.train.num_steps = 2_000  # the schedule's length: the measured runs' (docs/summarization.md)
  c.train.max_minutes = 55.0
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.train.early_stopping_patience = 3
  c.train.eval_metric = "rougeL"
  c.train.max_decode_length_factor = 0.5  # synopses are a fraction of their sources
  return c
