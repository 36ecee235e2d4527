"""German -> English on IWSLT14 (TED talks, ~160k training pairs): a standard benchmark recipe.

The data cannot be downloaded on this project's machines; on one with internet, fairseq's
preparation script fetches, cleans, tokenizes and lowercases it (the files before its BPE step
are what this recipe reads; SentencePiece replaces the BPE):

  git clone https://github.com/facebookresearch/fairseq && cd fairseq/examples/translation
  bash prepare-iwslt14.sh        # writes iwslt14.tokenized.de-en/tmp/{train,valid,test}.{de,en}
  python train.py --config=configs/iwslt14_de_en.py --workdir=/tmp/iwslt14 \\
      --config.data.options.directory=$PWD/iwslt14.tokenized.de-en/tmp
  python decode.py --workdir=/tmp/iwslt14 --split=test --beam_size=5 > /tmp/test.hyp

What it aims at: JoeyNMT's documented LSTM/GRU + attention results on this data, tokenized and
lowercased BLEU (our BLEU is sacrebleu's on the same tokenized, lowercased text): 27.0 word-level
(Bahdanau-style 1-layer model, beam 10) and 27.3 with a 32k BPE GRU model (beam 5); a
Transformer reaches 31.0. Not yet run with s2s_jax (no GPU and no download here): JoeyNMT reports
~8 hours on CPU for the word-level model.
"""

import ml_collections

from configs import translate


def get_config() -> ml_collections.ConfigDict:
  c = translate.get_config()
  c.data.options.directory = ""  # iwslt14.tokenized.de-en/tmp from fairseq's script
  c.data.options.files = ml_collections.ConfigDict({
      "train": ("train.de", "train.en"), "validation": ("valid.de", "valid.en"),
      "test": ("test.de", "test.en")})
  c.data.options.name = "iwslt14_de_en"
  c.data.test_split = "test"
  for side in (c.data.source_tokenizer, c.data.target_tokenizer):
    side.vocab_size = 10_000
  c.model.embed_size = 512
  c.model.encoder_hidden_size = 256  # per direction
  c.model.hidden_size = 512
  c.model.encoder_layers = 2
  c.model.decoder_layers = 2
  c.model.dropout = 0.3
  c.optimizer.learning_rate = 1e-3
  c.train.num_steps = 60_000  # ~25 epochs at 4096 tokens per batch
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  return c
