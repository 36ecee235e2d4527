"""Speech Commands v0.02 (35 spoken command words, one-second clips) through `speech_files`:
the recipe of configs/asr_words.py on real recordings. Not run here: the corpus is a download.

  python benchmarks/data/speech_lists.py speech_commands /data/speech_commands \\
      --out=/data/speech_commands                           # train / validation / test .tsv
  python train.py --config=configs/asr_speech_commands.py --workdir=/tmp/sc \\
      --config.data.options.directory=/data/speech_commands
"""

import ml_collections

from configs import asr_words


def get_config() -> ml_collections.ConfigDict:
  c = asr_words.get_config()
  c.data.dataset = "speech_files"
  c.data.options = ml_collections.ConfigDict({
      "directory": "/data/speech_commands",  # where speech_lists.py wrote the lists
      "files": {"train": "train.tsv", "validation": "validation.tsv", "test": "test.tsv"},
      "name": "speech_commands", "sample_rate": 16000, "skip_bad_lines": False})
  c.data.bucket_lengths = (104,)  # every clip is at most 1 s: 98 frames
  c.data.max_target_length = 16
  c.train.num_steps = 10000
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  return c
