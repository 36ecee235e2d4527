"""A tiny model for tests (on a generated copy task, tests/conftest.py) and the quickstart:

  python train.py --config=configs/tiny.py --workdir=/tmp/tiny --config.train.num_steps=300 \
      --config.train.eval_every=100 --config.train.checkpoint_every=100   # CMUdict, ~2 minutes
"""

import ml_collections

from configs import g2p


def get_config() -> ml_collections.ConfigDict:
  c = g2p.shared_config()
  c.data.dataset = "cmudict/no_stress"
  c.data.max_tokens = 256
  c.data.eval_max_tokens = 512
  c.data.bucket_lengths = (8, 16)
  c.model.embed_size = 16
  c.model.hidden_size = 32
  c.model.encoder_hidden_size = 16
  c.model.attention_score = "dot"
  c.model.input_feeding = True
  c.model.dropout = 0.0
  c.optimizer.learning_rate = 1e-2
  c.optimizer.schedule = "constant"
  c.train.num_steps = 30
  c.train.log_every = 1
  c.train.eval_every = 10
  c.train.checkpoint_every = 10
  c.train.label_smoothing = 0.0
  c.train.ema_decay = 0.9  # so the tests that train this config cover the moving average
  return c
