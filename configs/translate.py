"""Translation from your own parallel text with shared SentencePiece subwords.

  python train.py --config=configs/translate.py --workdir=/tmp/mt \
      --config.data.options.directory=/path/to/corpus \
      --config.data.options.files.train=train.tsv --config.data.options.files.validation=dev.tsv

Files are one TSV (source<TAB>target) per split, or two aligned files given as a list in Python
(see README). A stock tfds dataset prepared as array_record works too:
      --config.data.dataset=ted_hrlr_translate/pt_to_en
"""

import ml_collections

from configs import g2p


def get_config() -> ml_collections.ConfigDict:
  c = g2p.shared_config()
  c.data.dataset = "parallel_text"
  c.data.options = ml_collections.ConfigDict({
      "directory": "",  # where the files are
      "files": ml_collections.ConfigDict({"train": "train.tsv", "validation": "dev.tsv"}),
      "name": "corpus",  # prepared as parallel_text/<name>-<fingerprint of the files>
      "skip_bad_lines": False,  # skip (count, log) bad lines instead of stopping with an error
  })
  c.data.test_split = ""
  spm = {"kind": "sentencepiece", "vocab_size": 8000, "model_type": "bpe"}
  c.data.source_tokenizer = ml_collections.ConfigDict(spm)
  c.data.target_tokenizer = ml_collections.ConfigDict(spm)
  c.data.shared_vocab = True
  c.data.max_tokens = 4096
  c.data.eval_max_tokens = 8192
  c.data.bucket_lengths = (8, 16, 24, 32, 48, 64, 96, 128)
  c.model.embed_size = 256
  c.model.hidden_size = 512
  c.model.encoder_hidden_size = 256
  c.model.encoder_layers = 2
  c.model.decoder_layers = 2
  c.model.dropout = 0.3
  c.model.tie_embeddings = True
  c.model.input_feeding = True
  c.train.ema_decay = 0.0
  c.optimizer.learning_rate = 1e-3
  c.train.num_steps = 50_000
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  c.train.eval_metric = "bleu"
  c.train.max_decode_length_factor = 1.5
  return c
