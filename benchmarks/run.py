"""Speed benchmarks on the reference workload (benchmarks/workload.py), side by side in one run.

  pip install -e ".[bench]"            # adds torch (a benchmark peer, never a runtime dependency)
  python benchmarks/run.py --quick     # ~2-3 minutes on 2 CPU cores
  python benchmarks/run.py             # more timed steps

Each measurement runs in its own process, one after another: the machine's f32 matmul peak (a
large jitted matmul); s2s_jax's train step (with compile time: trace + lower, XLA compile) and
its greedy / beam-5 decoding; the same model in PyTorch (`torch.nn.LSTM`, greedy loop, beam
search over `torch.topk`) and with `flax.linen.RNN(OptimizedLSTMCell)`; the input pipeline.
Every peer loads s2s_jax's initial weights and must compute the same loss on the same batch
(rtol 1e-4) before it is timed: a peer that fails the check posts no number. Times are medians
of the timed steps (min and max kept). Writes benchmarks/results/<date>-<host>.json (with the
CPU model, core count and library versions) and prints a Markdown table of ratios.
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

import workload as w  # noqa: E402

RTOL = 1e-4
WORKERS = ("setup", "peak", "s2s_jax", "flax_rnn", "torch", "pipeline")


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

  from s2s_jax import ModelConfig, Seq2Seq, inference, losses, training
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
  for name, opts in (("greedy", inference.SearchOptions(method="greedy")),
                     ("beam5", inference.SearchOptions(beam_size=5, alpha=0.0))):
    opts = inference.SearchOptions(**{**opts.__dict__, "max_len": w.LENGTH,
                                      "max_len_ratio": 10.0, "max_len_offset": w.LENGTH})
    fn = jax.jit(lambda p, s, opts=opts: inference.search(p, cfg, s, opts, w.LENGTH))
    out = fn(params, src)
    if name == "greedy":
      np.save(os.path.join(args.setup, "s2s_jax_greedy.npy"), np.asarray(out.tokens_BRT[:, 0]))
    seconds = _timed_runs(lambda fn=fn: fn(params, src).tokens_BRT.block_until_ready(),
                          args.decode_runs, 1)
    decode[name] = {"seconds": seconds, "sentences_per_second": w.BATCH / seconds["median"],
                    "mean_output_length": float(np.asarray(out.length_BR[:, 0]).mean())}
  result["decode"] = decode

  tx = training.make_optimizer({"name": "adam", "clip_norm": 0.0, "accumulate_steps": 1})
  state = training.TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                              opt_state=tx.init(params), lr_scale=jax.numpy.ones(()),
                              apply_fn=model.apply, tx=tx,
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
         "--decode_runs", str(args.decode_runs)] + (["--quick"] if args.quick else [])
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
  parser.add_argument("--only", nargs="+", choices=WORKERS[1:], default=None)
  parser.add_argument("--out", default=None, help="results JSON (default: results/<date>-<host>)")
  parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
  parser.add_argument("--setup", help=argparse.SUPPRESS)
  args = parser.parse_args()
  args.steps = args.steps or (5 if args.quick else 20)
  args.decode_runs = args.decode_runs or (3 if args.quick else 10)

  if args.worker:
    result = globals()[f"worker_{args.worker}"](args)
    print("RESULT " + json.dumps(result), flush=True)
    return

  results = {"machine": _machine(), "quick": args.quick, "workload": {
      "vocab": w.VOCAB, "embed": w.EMBED, "hidden": w.HIDDEN, "layers": w.LAYERS,
      "batch": w.BATCH, "length": w.LENGTH, "train_gflop_per_step": w.train_flops() / 1e9}}
  with tempfile.TemporaryDirectory() as setup_dir:
    for name in ("setup", *(args.only or WORKERS[1:])):
      results[name] = _run_worker(name, args, setup_dir)
      if name == "setup" and results[name] is None:
        raise SystemExit("setup failed; nothing measured")
  stamp = datetime.date.today().isoformat()
  out = args.out or os.path.join(HERE, "results", f"{stamp}-{socket.gethostname()}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=1)
  print(_table(results))
  print(f"\n{results['machine']['cpu']}, {results['machine']['cores']} cores; jax "
        f"{results['machine']['jax']}, torch {results['machine']['torch']}; written to {out}")


if __name__ == "__main__":
  main()
