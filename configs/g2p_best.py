"""G2P on CMUdict (stress removed): the accuracy recipe, four runs ensembled.

  python train.py --config=configs/g2p_best.py --workdir=/tmp/g2p_a
  python train.py --config=configs/g2p_best.py --workdir=/tmp/g2p_b --config.seed=1 \
      --config.model.encoder_layers=1 --config.model.dropout=0.2 --config.train.num_steps=32000
  python train.py --config=configs/g2p_best.py --workdir=/tmp/g2p_c --config.seed=1
  python train.py --config=configs/g2p_best.py --workdir=/tmp/g2p_d --config.seed=2 \
      --config.train.num_steps=20000
  python decode.py --workdir=/tmp/g2p_a,/tmp/g2p_b,/tmp/g2p_c,/tmp/g2p_d --split=test \
      > /dev/null  # beam 5; WER / PER on stderr

Against configs/g2p.py: a 2-layer BiLSTM encoder (2 x 128 per layer) instead of 1, dropout 0.3
instead of 0.1, Adam 1e-3 instead of 3e-3, and 24,000 batches (~40 epochs) instead of 7,200.
On 2 CPU cores the step cost is per token (larger batches did not raise tokens/s), so epochs
are what time buys; at 3e-3 a long schedule stalled, 1e-3 kept improving to the end.

Measured 2026-11-29 (x86_64, 2 cores; runs a + b, then c + d, trained two side by side, ~2 h
per pair): test WER beam 5 of the runs alone a 26.3%, b 26.2%, c 25.2%, d 26.8%; ensembled
a+b 24.8%, a+b+c 24.0%, all four 23.9% (PER 5.7%, greedy 24.4%), validation 23.1%.
Issue 8's targets (test WER <= 24%, PER <= 6%) hold for the four-run ensemble, WER by 0.1 point.
Add `--config.data.dataset=cmudict` for the with-stress variant. It keeps input feeding, no
EMA and a 256-unit decoder, as measured; configs/g2p.py has changed all three since 2026-12-01.
"""

import ml_collections

from configs import g2p


def get_config() -> ml_collections.ConfigDict:
  c = g2p.shared_config()
  c.model.encoder_layers = 2
  c.model.hidden_size = 256  # as measured (configs/g2p.py has 192 since 2026-12-01)
  c.model.input_feeding = True  # as measured (see the docstring)
  c.train.ema_decay = 0.0
  c.model.dropout = 0.3
  c.optimizer.learning_rate = 1e-3
  c.train.num_steps = 24000
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  return c
