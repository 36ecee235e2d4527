"""Speech input side against the train step it feeds: host batches, device features, the step.

  python benchmarks/frontend_speed.py [--data_dir .exp/asr/tfds] [--steps 30]

On the same batches of `configs/asr_words.py` (frame buckets, 6,144 padded frames a batch),
measured one after another in one process on this machine:
  1. the grain `AudioPipeline` building batches on the host (int16 copies, no features),
  2. the log-mel front end alone (`features.log_mel`, jitted),
  3. the whole jitted train step of the recipe's model (front end, SpecAugment, pyramidal
     BiLSTM, location-aware attention, backward pass, Adam update).
Reports audio seconds per second for each and the share of the step the front end is. With
`--data_dir` it reads the prepared spoken_words corpus (the recipe's data); without, random
waveforms of 0.4-1.2 s (the corpus's range) with random 3-10 letter targets. Prints a Markdown
table and writes benchmarks/results/frontend_speed.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import decode_speed  # benchmarks/: the CPU model's name
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/
from configs import asr_words  # noqa: E402
from s2s_jax import features, optim, training  # noqa: E402
from s2s_jax import model as model_lib  # noqa: E402
from s2s_jax.data import BatchingConfig, TokenizerSpec, open_dataset  # noqa: E402
from s2s_jax.data.audio import AudioPipeline, audio_split  # noqa: E402


def _pairs(args) -> tuple[list[np.ndarray], list[str]]:
  if args.data_dir:
    options = dict(asr_words.get_config().data.options)
    return open_dataset("spoken_words", data_dir=args.data_dir, options=options).split(
        "train").columns()
  rng = np.random.default_rng(0)
  audio = [rng.integers(-3000, 3000, rng.integers(6400, 19200)).astype(np.int16)
           for _ in range(2000)]
  texts = ["".join(rng.choice(list("abcdefghij"), rng.integers(3, 11))) for _ in audio]
  return audio, texts


def _seconds_per_batch(fn, batches) -> float:
  """Mean seconds of `fn(batch)` over the batches, after one compiling pass over all of them."""
  for b in batches:
    jax.block_until_ready(fn(b))
  start = time.perf_counter()
  for b in batches:
    out = fn(b)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / len(batches)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None, help="tfds dir holding spoken_words")
  parser.add_argument("--steps", type=int, default=30, help="batches timed per measurement")
  args = parser.parse_args()
  config = asr_words.get_config()
  audio, texts = _pairs(args)
  target = TokenizerSpec("char").train(texts)
  cfg = config.data
  fc = features.FeatureConfig(sample_rate=config.model.sample_rate,
                              num_mels=config.model.num_mels)
  pipeline = AudioPipeline(
      audio_split(zip(audio, texts, strict=True), target),
      BatchingConfig(max_tokens=cfg.max_tokens, bucket_lengths=tuple(cfg.bucket_lengths),
                     max_target_length=cfg.max_target_length),
      frame_length=fc.frame_length, hop_length=fc.hop_length, shuffle=True, seed=0)

  it = pipeline.iterator()
  next(it)  # warm-up
  start = time.perf_counter()
  batches = [next(it) for _ in range(args.steps)]
  host_s = (time.perf_counter() - start) / args.steps
  batches = [{k: v for k, v in b.items() if k != "index"} for b in batches]
  audio_s = np.mean([b["audio_len"].sum() / fc.sample_rate for b in batches])

  front = jax.jit(lambda b: features.log_mel(b["audio"], b["audio_len"], fc)[0])
  front_s = _seconds_per_batch(front, batches)

  model_cfg = model_lib.ModelConfig.for_vocabularies(config.model, 0, target.vocab_size)
  tx = optim.make_optimizer(config.optimizer)
  schedule = optim.make_schedule(config.optimizer, config.train.num_steps)
  state = training.create_train_state(jax.random.key(0), model_lib.Seq2Seq(model_cfg), tx,
                                      schedule)
  step = jax.jit(functools.partial(training.train_step,
                                   label_smoothing=config.train.label_smoothing))
  rng = jax.random.key(1)
  step_s = _seconds_per_batch(lambda b: step(state, b, rng)[1]["loss_sum"], batches)

  rows = [("host batches (grain AudioPipeline, in process)", host_s),
          ("log-mel front end (jit)", front_s),
          ("train step (front end + SpecAugment + model + Adam, jit)", step_s)]
  hardware = f"{decode_speed._cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__} " \
             f"({jax.devices()[0].platform})"
  source = f"spoken_words train ({args.data_dir})" if args.data_dir else "random waveforms"
  print(f"\nSpeech input side, {source}: {len(batches)} batches of "
        f"{np.mean([len(b['audio_len']) for b in batches]):.0f} utterances, {audio_s:.1f} s "
        f"of audio each on average; {hardware}\n")
  print("| stage | ms per batch | audio seconds per second | share of a train step |")
  print("|---|---|---|---|")
  for name, seconds in rows:
    print(f"| {name} | {1000 * seconds:.1f} | {audio_s / seconds:,.0f} | "
          f"{seconds / step_s:.1%} |")
  out = os.path.join(os.path.dirname(__file__), "results", "frontend_speed.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump({"hardware": hardware, "source": source, "batches": len(batches),
               "audio_seconds_per_batch": float(audio_s),
               "seconds_per_batch": {name: s for name, s in rows}}, f, indent=1)


if __name__ == "__main__":
  main()
