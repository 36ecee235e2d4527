"""LibriSpeech (read English audiobooks, 10-35 s utterances) through `speech_files`: a larger
listen-attend-spell model with three pyramid levels. Not run here: the corpus is a download, and
its 100 hours want an accelerator.

  find /data/LibriSpeech -name '*.flac' | while read f; do sox "$f" "${f%.flac}.wav"; done
  python benchmarks/data/speech_lists.py librispeech /data/LibriSpeech --out=/data/ls \\
      --splits=train-clean-100,dev-clean,test-clean
  python train.py --config=configs/asr_librispeech.py --workdir=/tmp/ls \\
      --config.data.options.directory=/data/ls
"""

import ml_collections

from configs import asr_words


def get_config() -> ml_collections.ConfigDict:
  c = asr_words.get_config()
  c.data.dataset = "speech_files"
  c.data.options = ml_collections.ConfigDict({
      "directory": "/data/ls",  # where speech_lists.py wrote the lists
      "files": {"train": "train-clean-100.tsv", "validation": "dev-clean.tsv",
                "test": "test-clean.tsv"},
      "name": "librispeech", "sample_rate": 16000, "skip_bad_lines": False})
  c.data.max_tokens = 40000  # padded frames per batch (~20 utterances of 20 s)
  c.data.eval_max_tokens = 80000
  c.data.bucket_lengths = (400, 800, 1200, 1600, 2400, 3600)
  c.data.max_target_length = 400  # characters; longer transcripts are dropped and counted
  c.model.num_mels = 80
  c.model.encoder_layers = 4  # three pyramid levels: 80 ms per encoder step
  c.model.encoder_hidden_size = 256
  c.model.hidden_size = 512
  c.model.embed_size = 128
  c.model.location_width = 31
  c.model.dropout = 0.2
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 2000
  c.train.num_steps = 200000
  c.train.eval_every = 5000
  c.train.checkpoint_every = 5000
  c.train.max_decode_length_factor = 0.25
  return c
