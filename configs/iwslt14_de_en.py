"""German -> English on IWSLT14 (TED talks, ~160k training pairs): a standard benchmark recipe.

The data cannot be downloaded on this project's machines; on one with internet, fairseq's
preparation script fetches, cleans, tokenizes and lowercases it (the files before its BPE step
are what this recipe reads; SentencePiece replaces the BPE):

  git clone https://github.com/facebookresearch/fairseq /tmp/fairseq
  (cd /tmp/fairseq/examples/translation && bash prepare-iwslt14.sh)
  # -> /tmp/fairseq/examples/translation/iwslt14.tokenized.de-en/tmp/{train,valid,test}.{de,en}
  cd /path/to/s2s_jax
  python train.py --config=configs/iwslt14_de_en.py --workdir=/tmp/iwslt14 \
      --config.data.options.directory=/tmp/fairseq/examples/translation/iwslt14.tokenized.de-en/tmp
  python decode.py --workdir=/tmp/iwslt14 --split=test --beam_size=5 > /tmp/test.hyp

What it aims at: JoeyNMT's documented RNN + attention results on IWSLT14 de-en, tokenized and
lowercased BLEU (our BLEU is sacrebleu's on the same tokenized, lowercased text): 27.0 for a
word-level Bahdanau-style model (beam 10; data prepared with Wiseman & Rush's script, whose
training-set filtering differs from fairseq's; the test set is the same) and 27.3 for a 32k BPE
GRU model (beam 5); their Transformer reaches 31.0. Not yet run with s2s_jax (no download here):
JoeyNMT reports ~8 hours on CPU for its word-level model.
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
  c.model.embed_size = 512  # otherwise translate's 2-layer BiLSTM 2x256 / LSTM 512
  c.train.num_steps = 40_000  # ~30 epochs at ~3.5k real tokens per 4096-token batch (estimate)
  return c
