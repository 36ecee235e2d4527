"""Speed benchmarks, side by side in one run, on two workloads:

- `reference` (benchmarks/workload.py): vocabulary 8000, hidden 512, 2-layer LSTMs, Luong dot
  attention, one batch of 64 x 30; peers: PyTorch (`torch.nn.LSTM`) and `flax.linen.RNN`.
- `g2p` (benchmarks/g2p_workload.py): the configs/g2p.py model (BiLSTM 128 + LSTM 256,
  Luong general attention with input feeding, ~40-symbol vocabularies) on real CMUdict batches as
  the pipeline makes them; peer: the same model written like JoeyNMT / OpenNMT-py
  (benchmarks/torch_g2p.py: packed bidirectional `nn.LSTM`, an `nn.LSTMCell` decoder loop).

  pip install -e ".[bench]"            # adds torch (a benchmark peer, never a runtime dependency)
  python benchmarks/run.py --quick     # ~4-5 minutes on 2 CPU cores
  python benchmarks/run.py             # more timed steps
  python benchmarks/run.py --only g2p  # the g2p workload alone

Each measurement runs in its own process, one after another: the machine's f32 matmul peak (a
large jitted matmul); s2s_jax's train step (with compile time: trace + lower, XLA compile) and
its greedy / beam-5 decoding; the same model in PyTorch (`torch.nn.LSTM`, greedy loop, beam
search over `torch.topk`) and with `flax.linen.RNN(OptimizedLSTMCell)`; the input pipeline.
Every peer loads s2s_jax's initial weights and must compute the same loss on the same batch
(rtol 1e-4) before it is timed: a peer that fails the check posts no number. Times are medians
of the timed steps (min and max kept). Writes benchmarks/results/<date>-<host>.json (with the
CPU model, core count and library versions) and prints a Markdown table of ratios per workload.

On the g2p workload every process runs with `host_memory.keep_freed_memory()` applied first, as
train.py runs (PyTorch's CPU allocator goes through the same glibc malloc, so both
peers get the same setting). Its train step is timed over passes through all the stored batches
(each shape compiled and run once before timing); decoding uses weights trained for a few hundred
steps in the setup, so outputs end where a trained model's do, and s2s_jax and PyTorch decode the
same model (the share of identical greedy outputs is reported).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import g2p_workload  # noqa: E402
import workload as w  # noqa: E402

RTOL = 1e-4
WORKERS = ("setup", "peak", "s2s_jax", "flax_rnn", "torch", "pipeline", "g2p_setup",
           "g2p_s2s_jax", "g2p_torch")
REFERENCE_WORKERS = ("peak", "s2s_jax", "flax_rnn", "torch", "pipeline")
G2P_WORKERS = ("g2p_s2s_jax", "g2p_torch")


# ----------------------------------------------------------------------------- helpers


def _timed_runs(fn, steps: int, warmup: int) -> dict[str, float]:
  """Seconds per call of `fn` (which must block until its work is done): median, min, max."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return {"median": statistics.median(times), "min": min(times), "max": max(times),
          "runs": steps}


def _load(setup_dir: str):
  import numpy as np
  with np.load(os.path.join(setup_dir, "weights.npz")) as f:
    flat = dict(f)
  with np.load(os.path.join(setup_dir, "batch.npz")) as f:
    batch = dict(f)
  with open(os.path.join(setup_dir, "reference.json")) as f:
    reference = json.load(f)
  return flat, batch, reference


def _check_loss(name: str, loss: float, reference: float) -> dict:
  if abs(loss - reference) > RTOL * abs(reference):
    raise SystemExit(f"{name}: loss {loss!r} differs from s2s_jax's {reference!r} by more than "
                     f"rtol {RTOL}: not timing a model that computes something else")
  return {"loss": loss, "reference_loss": reference, "loss_rel_diff": abs(loss - reference)
          / abs(reference)}


def _compile_timed(jitted, *args):
  """(compiled executable, {trace_and_lower_seconds, xla_compile_seconds}) of `jitted(*args)`."""
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  lower_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  return compiled, {"trace_and_lower_seconds": lower_s,
                    "xla_compile_seconds": time.perf_counter() - start}


def _target_tokens(batch) -> int:
  return int((batch["tgt_out"] != w.PAD).sum())


def _train_rates(seconds: dict, batch) -> dict:
  median = seconds["median"]
  return {"step_seconds": seconds, "target_tokens_per_second": _target_tokens(batch) / median,
          "gflops_per_second": w.train_flops() / median / 1e9}


# ----------------------------------------------------------------------------- workers


def worker_setup(args) -> dict:
  """Initial weights (s2s_jax init, seed 0), the batch, and s2s_jax's loss on it."""
  import jax
  import numpy as np

  from s2s_jax import ModelConfig, Seq2Seq, losses
  cfg = ModelConfig(**w.model_config_kwargs())
  batch = w.make_batch(0)
  params = Seq2Seq(cfg).init(jax.random.PRNGKey(0), batch["src"][:1], batch["tgt_in"][:1])
  logits = Seq2Seq(cfg).apply(params, batch["src"], batch["tgt_in"])
  loss = float(losses.mean_cross_entropy(logits, batch["tgt_out"]))
  np.savez(os.path.join(args.setup, "weights.npz"), **w.flatten(params["params"]))
  np.savez(os.path.join(args.setup, "batch.npz"), **batch)
  with open(os.path.join(args.setup, "reference.json"), "w") as f:
    json.dump({"loss": loss}, f)
  return {"loss": loss, "train_gflop_per_step": w.train_flops() / 1e9}


def worker_peak(args) -> dict:
  """f32 matmul throughput of this machine through XLA: the ceiling for every model here."""
  import jax
  import jax.numpy as jnp
  n = 2048 if args.quick else 4096
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  seconds = _timed_runs(lambda: matmul(a, b).block_until_ready(), 5 if args.quick else 10, 2)
  best = 2 * n ** 3 / seconds["min"] / 1e9
  return {"n": n, "seconds": seconds, "gflops_per_second": 2 * n ** 3 / seconds["median"] / 1e9,
          "gflops_per_second_best": best}


def worker_s2s_jax(args) -> dict:
  import jax
  import numpy as np
  import optax

  from s2s_jax import ModelConfig, Seq2Seq, losses, optim, search, training
  flat, batch, reference = _load(args.setup)
  cfg = ModelConfig(**w.model_config_kwargs())
  model = Seq2Seq(cfg)
  params = jax.tree.map(jax.numpy.asarray, w.unflatten(flat))
  logits = jax.jit(model.apply)({"params": params}, batch["src"], batch["tgt_in"])
  result = _check_loss("s2s_jax", float(losses.mean_cross_entropy(logits, batch["tgt_out"])),
                       reference["loss"])

  # Decoding first: the train step donates (deletes) the parameters it is given.
  decode = {}
  src = jax.numpy.asarray(batch["src"])
  for name, opts in (("greedy", search.SearchOptions(method="greedy")),
                     ("beam5", search.SearchOptions(beam_size=5, alpha=0.0))):
    opts = search.SearchOptions(**{**opts.__dict__, "max_len": w.LENGTH,
                                      "max_len_ratio": 10.0, "max_len_offset": w.LENGTH})
    fn = jax.jit(lambda p, s, opts=opts: search.search(p, cfg, s, opts, w.LENGTH))
    out = fn(params, src)
    if name == "greedy":
      np.save(os.path.join(args.setup, "s2s_jax_greedy.npy"), np.asarray(out.tokens_BRT[:, 0]))
    seconds = _timed_runs(lambda fn=fn: fn(params, src).tokens_BRT.block_until_ready(),
                          args.decode_runs, 1)
    decode[name] = {"seconds": seconds, "sentences_per_second": w.BATCH / seconds["median"],
                    "mean_output_length": float(np.asarray(out.length_BR[:, 0]).mean())}
  result["decode"] = decode

  tx = optim.make_optimizer({"name": "adam", "clip_norm": 0.0, "accumulate_steps": 1})
  state = training.TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                              opt_state=tx.init(params), lr_scale=jax.numpy.ones(()),
                              ema_params=None, apply_fn=model.apply, tx=tx,
                              schedule=optax.constant_schedule(w.LEARNING_RATE))
  rng = jax.random.PRNGKey(0)
  step = jax.jit(training.train_step, donate_argnums=0)
  compiled, result["compile"] = _compile_timed(step, state, batch, rng)

  holder = {"state": state}

  def train_once():
    holder["state"], metrics = compiled(holder["state"], batch, rng)
    metrics["loss_sum"].block_until_ready()

  result["train"] = _train_rates(_timed_runs(train_once, args.steps, args.warmup), batch)

  return result


def worker_flax_rnn(args) -> dict:
  import flax_rnn_seq2seq as fr
  import jax
  import optax

  from s2s_jax import losses
  flat, batch, reference = _load(args.setup)
  model = fr.FlaxRNNSeq2Seq()
  params = jax.tree.map(jax.numpy.asarray, fr.params_from_flat(flat))
  logits = jax.jit(model.apply)({"params": params}, batch["src"], batch["tgt_in"])
  result = _check_loss("flax.linen.RNN",
                       float(losses.mean_cross_entropy(logits, batch["tgt_out"])),
                       reference["loss"])
  tx = optax.adam(w.LEARNING_RATE)

  def train_step(params, opt_state, batch):
    def loss_fn(p):
      out = model.apply({"params": p}, batch["src"], batch["tgt_in"])
      return losses.mean_cross_entropy(out, batch["tgt_out"])
    value, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  step = jax.jit(train_step, donate_argnums=(0, 1))
  opt_state = tx.init(params)
  compiled, result["compile"] = _compile_timed(step, params, opt_state, batch)
  holder = {"params": params, "opt": opt_state}

  def train_once():
    holder["params"], holder["opt"], value = compiled(holder["params"], holder["opt"], batch)
    value.block_until_ready()

  result["train"] = _train_rates(_timed_runs(train_once, args.steps, args.warmup), batch)
  return result


def worker_torch(args) -> dict:
  import numpy as np
  import torch
  import torch_seq2seq as ts
  torch.set_num_threads(os.cpu_count() or 1)
  flat, batch, reference = _load(args.setup)
  torch.manual_seed(0)
  model = ts.TorchSeq2Seq()
  model.load_flat(flat)
  with torch.no_grad():
    result = _check_loss("torch", float(ts.loss(model, batch)), reference["loss"])
  step = ts.make_train_step(model)
  result["train"] = _train_rates(_timed_runs(lambda: step(batch), args.steps, args.warmup), batch)
  # Decoding from the initial weights, as s2s_jax's worker does.
  model.load_flat(flat)
  model.eval()
  src = torch.from_numpy(batch["src"]).long()
  greedy_tokens = ts.greedy(model, src, w.LENGTH).numpy()
  jax_greedy = np.load(os.path.join(args.setup, "s2s_jax_greedy.npy"))
  result["greedy_rows_identical_to_s2s_jax"] = float(
      (greedy_tokens[:, :jax_greedy.shape[1]] == jax_greedy).all(axis=1).mean())
  decode = {}
  for name, fn in (("greedy", lambda: ts.greedy(model, src, w.LENGTH)),
                   ("beam5", lambda: ts.beam_search(model, src, 5, w.LENGTH))):
    seconds = _timed_runs(fn, args.decode_runs, 1)
    decode[name] = {"seconds": seconds, "sentences_per_second": w.BATCH / seconds["median"]}
  result["decode"] = decode
  return result


def worker_pipeline(args) -> dict:
  """Batches/s of the grain pipeline on synthetic word-level pairs shaped like the workload."""
  import numpy as np

  from s2s_jax import data as d
  rng = np.random.default_rng(0)
  n = 20_000 if args.quick else 100_000
  words = np.array([f"w{i}" for i in range(w.VOCAB - 4)])
  ids = rng.integers(0, len(words), (2 * n, w.LENGTH - 1))
  lengths = rng.integers(17, w.LENGTH, 2 * n)
  texts = [" ".join(words[row[:k]]) for row, k in zip(ids, lengths, strict=True)]
  pairs = list(zip(texts[:n], texts[n:], strict=True))
  tok = d.VocabTokenizer("word", tuple(words))
  start = time.perf_counter()
  data = d.TokenizedSplit.build(pairs, tok, tok)
  tokenize_s = time.perf_counter() - start
  pipeline = d.Pipeline(data, d.BatchingConfig(max_tokens=w.BATCH * 32, bucket_lengths=(24, 32)),
                        shuffle=True, seed=0)
  iterator = pipeline.iterator()
  next(iterator)
  batches = 200 if args.quick else 1000
  tokens = examples = 0
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(iterator)
    tokens += int((batch["tgt_out"] != w.PAD).sum())
    examples += int((batch["index"] >= 0).sum())
  seconds = time.perf_counter() - start
  return {"examples": n, "tokenize_seconds": tokenize_s, "batches_per_second": batches / seconds,
          "examples_per_second": examples / seconds, "target_tokens_per_second": tokens / seconds}


# ----------------------------------------------------------------------------- g2p workload


def _g2p_load(setup_dir: str, name: str) -> dict:
  import numpy as np
  with np.load(os.path.join(setup_dir, name)) as f:
    return dict(f)


def _g2p_search_options(beam: int):
  """Beam search without length penalty (the peer's), default output limits."""
  from s2s_jax import search
  return search.SearchOptions(method="greedy" if beam == 1 else "beam", beam_size=beam,
                                 alpha=0.0)


def worker_g2p_setup(args) -> dict:
  """Initial weights (seed 0), s2s_jax's loss on the first batch (no dropout), and the weights
  after `--decode_train_steps` Adam steps (lr 3e-3) for the decode measurements."""
  import functools

  import jax
  import numpy as np

  from s2s_jax import ModelConfig, Seq2Seq, host_memory, losses, optim, training
  host_memory.keep_freed_memory()
  work = g2p_workload.load()
  model = Seq2Seq(ModelConfig(**work.model))
  batch = work.batches[0]
  params = model.init(jax.random.PRNGKey(0), batch["src"][:1], batch["tgt_in"][:1])["params"]
  logits = jax.jit(model.apply)({"params": params}, batch["src"], batch["tgt_in"])
  loss = float(losses.mean_cross_entropy(logits, batch["tgt_out"],
                                         label_smoothing=work.label_smoothing))
  np.savez(os.path.join(args.setup, "g2p_init.npz"), **w.flatten(params))
  tx = optim.make_optimizer({"name": "adam", "clip_norm": work.clip_norm,
                                "accumulate_steps": 1})
  state = training.create_train_state(jax.random.PRNGKey(0), model, tx, lambda s: 3e-3)
  step = jax.jit(functools.partial(training.train_step, label_smoothing=work.label_smoothing))
  rng = jax.random.PRNGKey(1)
  start = time.perf_counter()
  for k in range(args.decode_train_steps):
    state, metrics = step(state, work.batches[k % len(work.batches)], rng)
  trained_loss = float(metrics["loss_sum"] / metrics["tokens"])
  np.savez(os.path.join(args.setup, "g2p_trained.npz"), **w.flatten(state.params))
  with open(os.path.join(args.setup, "g2p_reference.json"), "w") as f:
    json.dump({"loss": loss}, f)
  return {"loss": loss, "decode_weights": {"steps": args.decode_train_steps,
                                           "last_train_loss": trained_loss,
                                           "seconds": time.perf_counter() - start},
          "train_gflop_per_pass": g2p_workload.train_flops(work) / 1e9,
          "batches": len(work.batches), "tokens_per_pass": work.tokens,
          "shapes": sorted({tuple(b["src"].shape) for b in work.batches})}


def _pass_rates(pass_seconds: dict, work) -> dict:
  median = pass_seconds["median"]
  return {"pass_seconds": pass_seconds, "tokens_per_second": work.tokens / median,
          "step_ms": 1e3 * median / len(work.batches),
          "gflops_per_second": g2p_workload.train_flops(work) / median / 1e9}


def worker_g2p_s2s_jax(args) -> dict:
  import functools

  import jax
  import numpy as np

  from s2s_jax import ModelConfig, Seq2Seq, host_memory, losses, optim, search, training
  host_memory.keep_freed_memory()  # as train.py does, before the first computation
  work = g2p_workload.load()
  cfg = ModelConfig(**work.model)
  model = Seq2Seq(cfg)
  with open(os.path.join(args.setup, "g2p_reference.json")) as f:
    reference = json.load(f)
  params = jax.tree.map(jax.numpy.asarray, w.unflatten(_g2p_load(args.setup, "g2p_init.npz")))
  batch = work.batches[0]
  logits = jax.jit(model.apply)({"params": params}, batch["src"], batch["tgt_in"])
  result = _check_loss("s2s_jax", float(losses.mean_cross_entropy(
      logits, batch["tgt_out"], label_smoothing=work.label_smoothing)), reference["loss"])

  tx = optim.make_optimizer({"name": "adam", "clip_norm": work.clip_norm,
                                "accumulate_steps": 1})
  state = training.TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                              opt_state=tx.init(params), lr_scale=jax.numpy.ones(()),
                              ema_params=None, apply_fn=model.apply, tx=tx,
                              schedule=optax_constant(work.learning_rate))
  step = jax.jit(functools.partial(training.train_step, label_smoothing=work.label_smoothing),
                 donate_argnums=0)
  batches = [jax.device_put(b) for b in work.batches]
  rng = jax.random.PRNGKey(1)
  compile_seconds, seen = 0.0, set()
  for b in batches:  # one compile (and one run) per bucket shape, untimed
    if b["src"].shape not in seen:
      seen.add(b["src"].shape)
      start = time.perf_counter()
      state, metrics = step(state, b, rng)
      metrics["loss_sum"].block_until_ready()
      compile_seconds += time.perf_counter() - start
  holder = {"state": state}

  def train_pass():
    for b in batches:
      holder["state"], metrics = step(holder["state"], b, rng)
    metrics["loss_sum"].block_until_ready()

  result["train"] = _pass_rates(_timed_runs(train_pass, args.g2p_passes, 1), work)
  result["train"]["compile_and_first_step_seconds"] = compile_seconds

  trained = jax.tree.map(jax.numpy.asarray,
                         w.unflatten(_g2p_load(args.setup, "g2p_trained.npz")))
  decode = {}
  for name, beam in (("greedy", 1), ("beam5", 5)):
    opts = _g2p_search_options(beam)
    fns = {}
    for src in work.decode_batches:
      S = src.shape[1]
      if S not in fns:
        fns[S] = jax.jit(functools.partial(search.search, cfg=cfg, opts=opts,
                                           max_length=opts.output_length(S)))
        fns[S](trained, src_BS=src).tokens_BRT.block_until_ready()
    outputs = []

    def decode_pass(fns=fns, outputs=outputs):
      outputs.clear()
      for src in work.decode_batches:
        outputs.append(fns[src.shape[1]](trained, src_BS=src).tokens_BRT)
      outputs[-1].block_until_ready()

    seconds = _timed_runs(decode_pass, args.decode_runs, 1)
    decode[name] = {"seconds": seconds,
                    "words_per_second": work.decode_words / seconds["median"],
                    "mean_output_length": float(np.mean(
                        [np.sum(np.asarray(o[:, 0]) != 0, axis=1).mean() for o in outputs]))}
    np.savez(os.path.join(args.setup, f"g2p_s2s_jax_{name}.npz"),
             *[np.asarray(o[:, 0]) for o in outputs])
  result["decode"] = decode
  return result


def optax_constant(value: float):
  import optax
  return optax.constant_schedule(value)


def worker_g2p_torch(args) -> dict:
  import numpy as np
  import torch
  import torch_g2p as tg

  from s2s_jax import host_memory
  host_memory.keep_freed_memory()  # the same allocator setting as the s2s_jax process
  torch.set_num_threads(os.cpu_count() or 1)
  work = g2p_workload.load()
  with open(os.path.join(args.setup, "g2p_reference.json")) as f:
    reference = json.load(f)
  torch.manual_seed(0)
  model = tg.TorchG2P(work.model)
  model.load_flat(_g2p_load(args.setup, "g2p_init.npz"))
  model.eval()
  with torch.no_grad():
    result = _check_loss("torch", float(tg.loss(model, work.batches[0], work.label_smoothing)),
                         reference["loss"])
  model.train()
  step = tg.make_train_step(model, work.learning_rate, work.clip_norm, work.label_smoothing)

  def train_pass():
    for b in work.batches:
      value = step(b)
    float(value)

  step(work.batches[0])
  result["train"] = _pass_rates(_timed_runs(train_pass, args.g2p_passes, 1), work)

  model.load_flat(_g2p_load(args.setup, "g2p_trained.npz"))
  model.eval()
  decode = {}
  for name, beam in (("greedy", 1), ("beam5", 5)):
    opts = _g2p_search_options(beam)
    sources = [torch.from_numpy(src).long() for src in work.decode_batches]
    limits = [opts.output_length(src.shape[1]) for src in work.decode_batches]
    outputs = []

    def decode_pass(beam=beam, sources=sources, limits=limits, outputs=outputs):
      outputs.clear()
      for src, limit in zip(sources, limits, strict=True):
        outputs.append(tg.greedy(model, src, limit) if beam == 1
                       else tg.beam_search(model, src, beam, limit))

    seconds = _timed_runs(decode_pass, args.decode_runs, 1)
    with np.load(os.path.join(args.setup, f"g2p_s2s_jax_{name}.npz")) as f:
      jax_out = [f[f"arr_{i}"] for i in range(len(outputs))]
    same = [(_until_eos(a) == _until_eos(b)) for o, j in zip(outputs, jax_out, strict=True)
            for a, b in zip(o.numpy(), j, strict=True)]
    decode[name] = {"seconds": seconds, "words_per_second": work.decode_words / seconds["median"],
                    "outputs_identical_to_s2s_jax": float(np.mean(same))}
  result["decode"] = decode
  return result


def _until_eos(ids) -> tuple:
  out = []
  for i in map(int, ids):
    if i in (0, g2p_workload.EOS):
      break
    out.append(i)
  return tuple(out)


def _g2p_table(results: dict) -> str:
  jax_r, torch_r = results.get("g2p_s2s_jax") or {}, results.get("g2p_torch") or {}
  setup = results.get("g2p_setup") or {}

  def get(node, *keys):
    for key in keys:
      if not isinstance(node, dict):
        return None
      node = node.get(key)
    return node

  lines = ["| g2p workload | s2s_jax | PyTorch (JoeyNMT-style) | s2s_jax / PyTorch |",
           "|---|---|---|---|"]
  for label, keys, spec, higher in (
      ("train step, source + target tokens/s", ("train", "tokens_per_second"), ",.0f", True),
      ("train step, ms (mean over the batches)", ("train", "step_ms"), ".1f", False),
      ("train step, GFLOP/s of matmuls", ("train", "gflops_per_second"), ".1f", True),
      ("greedy decode, words/s", ("decode", "greedy", "words_per_second"), ",.0f", True),
      ("beam-5 decode, words/s", ("decode", "beam5", "words_per_second"), ",.0f", True)):
    a, b = get(jax_r, *keys), get(torch_r, *keys)
    ratio = _ratio(a, b) if higher else _ratio(b, a)
    lines.append(f"| {label} | " + " | ".join("n/a" if v is None else format(v, spec)
                                              for v in (a, b))
                 + f" | {'n/a' if ratio is None else format(ratio, '.2f') + 'x'} |")
  out = "\n".join(lines)
  if setup:
    out += (f"\n\n{setup['batches']} batches {setup['shapes']}, {setup['tokens_per_pass']:,} "
            f"tokens and {setup['train_gflop_per_pass']:.0f} GFLOP of matmuls per pass; decoding "
            f"with weights after {setup['decode_weights']['steps']} training steps.")
  same = get(torch_r, "decode", "greedy", "outputs_identical_to_s2s_jax")
  if same is not None:
    out += (f" Identical outputs: greedy {same:.1%}, beam 5 "
            f"{get(torch_r, 'decode', 'beam5', 'outputs_identical_to_s2s_jax'):.1%}.")
  return out


# ----------------------------------------------------------------------------- driver


def _machine() -> dict:
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  versions = {}
  for module in ("jax", "jaxlib", "flax", "optax", "torch", "numpy"):
    try:
      versions[module] = __import__(module).__version__
    except ImportError:
      versions[module] = None
  return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version(), "host": socket.gethostname(), **versions}


def _run_worker(name: str, args, setup_dir: str) -> dict | None:
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--setup", setup_dir,
         "--steps", str(args.steps), "--warmup", str(args.warmup),
         "--decode_runs", str(args.decode_runs), "--g2p_passes", str(args.g2p_passes),
         "--decode_train_steps", str(args.decode_train_steps)] + (["--quick"] if args.quick
                                                                  else [])
  env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
  start = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  if proc.returncode != 0 or not lines:
    print(f"[{name}] FAILED (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
    return None
  result = json.loads(lines[-1][len("RESULT "):])
  result["worker_seconds"] = time.perf_counter() - start
  print(f"[{name}] done in {result['worker_seconds']:.0f} s", file=sys.stderr)
  return result


def _ratio(a, b):
  return None if not a or not b else a / b


def _table(results: dict) -> str:
  peak = results.get("peak", {}).get("gflops_per_second")
  lines = ["| measurement | s2s_jax | flax.linen.RNN | PyTorch nn.LSTM | s2s_jax / flax | "
           "s2s_jax / PyTorch |", "|---|---|---|---|---|---|"]

  def get(name, *keys):
    node = results.get(name)
    for key in keys:
      if not isinstance(node, dict):
        return None
      node = node.get(key)
    return node

  def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)

  def row(label, keys, spec, higher_better=True):
    values = [get(n, *keys) for n in ("s2s_jax", "flax_rnn", "torch")]
    if higher_better:
      ratios = [_ratio(values[0], values[1]), _ratio(values[0], values[2])]
    else:
      ratios = [_ratio(values[1], values[0]), _ratio(values[2], values[0])]
    lines.append(f"| {label} | " + " | ".join(fmt(v, spec) for v in values) + " | "
                 + " | ".join(fmt(r, ".2f") + ("x" if r else "") for r in ratios) + " |")

  row("train step, target tokens/s", ("train", "target_tokens_per_second"), ",.0f")
  row("train step, median s", ("train", "step_seconds", "median"), ".2f", higher_better=False)
  row("train step, GFLOP/s", ("train", "gflops_per_second"), ".1f")
  row("greedy decode, sentences/s", ("decode", "greedy", "sentences_per_second"), ",.0f")
  row("beam-5 decode, sentences/s", ("decode", "beam5", "sentences_per_second"), ",.0f")
  for key in ("trace_and_lower_seconds", "xla_compile_seconds"):
    values = [get(n, "compile", key) for n in ("s2s_jax", "flax_rnn")]
    lines.append(f"| train step {key.replace('_seconds', '').replace('_', ' ')}, s | "
                 + " | ".join(fmt(v, ".1f") for v in values) + " | n/a | | |")
  out = "\n".join(lines)
  gflops = get("s2s_jax", "train", "gflops_per_second")
  if peak:
    out += (f"\n\nMatmul peak (f32, {results['peak']['n']}^2, XLA): {peak:.1f} GFLOP/s; "
            f"s2s_jax train step at {fmt(_ratio(gflops, peak), '.0%')} of it.")
  pipe = results.get("pipeline")
  tok = get("s2s_jax", "train", "target_tokens_per_second")
  if pipe and tok:
    out += (f"\nInput pipeline: {pipe['target_tokens_per_second']:,.0f} target tokens/s "
            f"({pipe['target_tokens_per_second'] / tok:.0f}x the s2s_jax train step).")
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description="s2s_jax speed benchmarks (see module docstring)")
  parser.add_argument("--quick", action="store_true", help="fewer timed steps (~2-3 minutes)")
  parser.add_argument("--steps", type=int, default=None, help="timed train steps")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--decode_runs", type=int, default=None)
  parser.add_argument("--only", nargs="+", choices=(*REFERENCE_WORKERS, "g2p", *G2P_WORKERS),
                      default=None, help="measurements to run; 'g2p' = the whole g2p workload")
  parser.add_argument("--g2p_passes", type=int, default=None,
                      help="timed passes over the g2p training batches")
  parser.add_argument("--decode_train_steps", type=int, default=None,
                      help="training steps behind the g2p decode weights")
  parser.add_argument("--out", default=None, help="results JSON (default: results/<date>-<host>)")
  parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
  parser.add_argument("--setup", help=argparse.SUPPRESS)
  args = parser.parse_args()
  args.steps = args.steps or (5 if args.quick else 20)
  args.decode_runs = args.decode_runs or (3 if args.quick else 10)
  args.g2p_passes = args.g2p_passes or (2 if args.quick else 5)
  args.decode_train_steps = args.decode_train_steps or (150 if args.quick else 300)

  if args.worker:
    result = globals()[f"worker_{args.worker}"](args)
    print("RESULT " + json.dumps(result), flush=True)
    return

  only = args.only or [*REFERENCE_WORKERS, "g2p"]
  reference = [n for n in REFERENCE_WORKERS if n in only]
  g2p = [n for n in G2P_WORKERS if n in only or "g2p" in only]
  results = {"machine": _machine(), "quick": args.quick, "workload": {
      "vocab": w.VOCAB, "embed": w.EMBED, "hidden": w.HIDDEN, "layers": w.LAYERS,
      "batch": w.BATCH, "length": w.LENGTH, "train_gflop_per_step": w.train_flops() / 1e9}}
  with tempfile.TemporaryDirectory() as setup_dir:
    for setup, names in (("setup", reference), ("g2p_setup", g2p)):
      if not names:
        continue
      results[setup] = _run_worker(setup, args, setup_dir)
      if results[setup] is None:
        raise SystemExit(f"{setup} failed; nothing measured")
      for name in names:
        results[name] = _run_worker(name, args, setup_dir)
  stamp = datetime.date.today().isoformat()
  out = args.out or os.path.join(HERE, "results", f"{stamp}-{socket.gethostname()}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=1)
  if reference:
    print(_table(results))
  if g2p:
    print(("\n" if reference else "") + _g2p_table(results))
  print(f"\n{results['machine']['cpu']}, {results['machine']['cores']} cores; jax "
        f"{results['machine']['jax']}, torch {results['machine']['torch']}; written to {out}")


if __name__ == "__main__":
  main()
