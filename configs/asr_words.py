"""Speech recognition of spoken words (the offline `spoken_words` corpus: CMUdict words spoken by
espeak-ng): log-mel features on device, a pyramidal BiLSTM encoder (LAS), location-aware attention
(Chorowski et al. 2015), characters out.

  apt-get install espeak-ng                                          # renders the corpus
  python train.py --config=configs/asr_words.py --workdir=/tmp/asr   # prepares it on first use
  python decode.py --workdir=/tmp/asr --split=test --beam_size=5     # held-out words and voices
  python decode.py --workdir=/tmp/asr --input=wavs.txt               # your WAV files, one a line

Baselines: `--config.model.attention=none` (the encoder's final state only) and
`--config.model.attention=bahdanau` (content-only attention).

Joint CTC-attention (model.ctc_weight = 0.3, the best of 0 / 0.3 / 0.5 / 1 by validation CER at
3,000 steps; decoding uses the same weight unless `decode.py --ctc_weight=...` says otherwise).

Measured (2026-12-03, 2 CPU cores, seed 0; 3,000 steps): on unseen words from unseen voices,
test CER 31.2% greedy, 28.9% beam 5 (attention only), 28.4% / WER 87.2% joint beam 5; the same
config without CTC (`--config.model.ctc_weight=0`): 31.8% greedy, 29.7% beam 5 (the WER is
mostly the spelling of unseen names). Beam 5 test CER of the baselines (2026-12-01, without
CTC): content-only attention 30.4%, no attention 44.4% (docs/speech.md).
"""

import ml_collections

from configs import g2p


def get_config() -> ml_collections.ConfigDict:
  c = g2p.shared_config()
  c.data.dataset = "spoken_words"
  # spoken_words options (docs/speech.md): 8,000 words spoken twice each (~14k training
  # utterances); target 'text' is the spelling, 'phones' the CMUdict pronunciation.
  c.data.options = ml_collections.ConfigDict(
      {"num_words": 8000, "renditions": 2, "target": "text", "dict_path": "", "num_workers": 0})
  c.data.source_tokenizer = None  # the source is audio: no tokenizer
  c.data.target_tokenizer = ml_collections.ConfigDict({"kind": "char"})
  # The source side counts feature frames (10 ms each): a word is ~40-110 frames.
  c.data.max_tokens = 6144  # padded frames per batch (~80 words)
  c.data.eval_max_tokens = 16384
  c.data.bucket_lengths = (48, 64, 80, 96, 128, 192)
  c.data.max_target_length = 24  # characters + EOS: every batch's padded target length

  c.model.source = "audio"
  c.model.num_mels = 40
  c.model.sample_rate = 16000
  c.model.spec_augment = True
  c.model.encoder_layers = 3  # two pyramid levels: 40 ms per encoder step
  c.model.encoder_reduce = 2
  c.model.encoder_hidden_size = 128
  c.model.embed_size = 64  # characters
  c.model.hidden_size = 192
  c.model.attention = "location"
  c.model.location_filters = 8
  c.model.location_width = 15
  c.model.attention_score = "general"  # unused by 'location'; kept valid for --attention=luong
  c.model.input_feeding = False
  c.model.dropout = 0.1
  c.model.ctc_weight = 0.3  # joint CTC-attention (docs/speech.md)

  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 300
  c.train.num_steps = 3000
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.train.eval_metric = "cer"  # speech: WER and CER of transcripts, the best step by CER
  c.train.max_decode_length_factor = 0.3  # characters per feature frame (30 a second) + 10
  return c
