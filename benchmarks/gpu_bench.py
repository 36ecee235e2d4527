"""s2s_jax against PyTorch (cuDNN) on a GPU: both workloads in float32 and bfloat16, a large
variant, and the encoder recurrence alone. Run it through benchmarks/gpu.sh.

Cases (each framework in its own process, so neither holds the other's GPU memory):
- `reference-{f32,bf16}`: benchmarks/workload.py (vocabulary 8000, hidden 512, 2-layer LSTMs,
  Luong dot attention, batch 64 x 30) against `torch_seq2seq.py` (`nn.LSTM`, cuDNN on a GPU):
  train step, and greedy / beam-5 decoding in float32.
- `large-{f32,bf16}`: the same model with batch 256 and hidden 1024: train step.
- `g2p-{f32,bf16}`: benchmarks/g2p_workload.py (configs/g2p.py on real CMUdict batches) against
  `torch_g2p.py` (packed bidirectional `nn.LSTM` encoder, `nn.LSTMCell` decoder loop): train
  step over all batches, and greedy / beam-5 decoding in float32.
- `encoder`: a 2-layer bidirectional LSTM (hidden 512, batch 64 x 30, padded) forward + backward:
  s2s_jax's scan (`rnn.rnn_stack`) against `torch.nn.LSTM` (cuDNN) and `jax.experimental.rnn.lstm`
  (cuDNN through JAX on a GPU), whose outputs are first checked equal to the scan's.

bfloat16 means s2s_jax's `ModelConfig.dtype='bfloat16'` (bf16 matmul inputs, float32 parameters,
states and softmaxes) and `torch.autocast(dtype=torch.bfloat16)` for the peer. Losses are checked
against s2s_jax's before timing: rtol 1e-4 in float32, 5e-2 in bfloat16 (TF32 is off in both).

Without a GPU it runs the same code on the CPU with small sizes and few steps (`--smoke` is
implied), so the script can be tested anywhere. Imports only what the GPU image has: jax, flax,
optax, orbax, torch, numpy, absl, tqdm, sentencepiece, sacrebleu (no tfds, grain or
ml_collections). Writes <out>/gpu_bench.json and <out>/gpu_bench.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import g2p_workload  # noqa: E402
import workload as w  # noqa: E402

CASES = ("reference-f32", "reference-bf16", "large-f32", "large-bf16", "g2p-f32", "g2p-bf16",
         "encoder")
RTOL = {"float32": 1e-4, "bfloat16": 5e-2}


def _timed(fn, steps: int, warmup: int, sync) -> dict:
  for _ in range(warmup):
    fn()
  sync()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    sync()
    times.append(time.perf_counter() - start)
  return {"median": statistics.median(times), "min": min(times), "max": max(times),
          "runs": steps}


def _case(name: str, smoke: bool) -> dict:
  """What a case runs: workload, dtype, batch/hidden sizes, decoding or not."""
  workload, _, precision = name.partition("-")
  dtype = {"f32": "float32", "bf16": "bfloat16", "": "float32"}[precision]
  spec = {"workload": workload, "dtype": dtype, "decode": precision == "f32"
          and workload != "large", "batch": w.BATCH, "hidden": w.HIDDEN}
  if workload == "large":
    spec.update(workload="reference", batch=256, hidden=1024)
  if smoke:  # CPU fallback: the same code paths at toy sizes
    spec.update(batch=min(spec["batch"], 16), hidden=min(spec["hidden"], 64))
  return spec


def _setup(args, spec) -> dict:
  """Initial weights (s2s_jax init, seed 0), the batches, and s2s_jax's loss on the first batch
  (no dropout): what both frameworks load."""
  import jax
  import numpy as np

  from s2s_jax import ModelConfig, Seq2Seq, losses
  if spec["workload"] == "g2p":
    work = g2p_workload.load()
    model_kwargs, smoothing = dict(work.model), work.label_smoothing
    batches = work.batches[:8] if args.smoke else work.batches
    decode = work.decode_batches[:2] if args.smoke else work.decode_batches
  else:
    model_kwargs, smoothing = w.model_config_kwargs(spec["hidden"]), 0.0
    batches = [w.make_batch(0, spec["batch"])]
    decode = [batches[0]["src"]]
  model_kwargs["dtype"] = spec["dtype"]
  model = Seq2Seq(ModelConfig(**model_kwargs))
  params = model.init(jax.random.PRNGKey(0), batches[0]["src"][:1], batches[0]["tgt_in"][:1])
  logits = jax.jit(model.apply)(params, batches[0]["src"], batches[0]["tgt_in"])
  loss = float(losses.mean_cross_entropy(logits, batches[0]["tgt_out"],
                                         label_smoothing=smoothing))
  arrays = {f"param/{k}": v for k, v in w.flatten(params["params"]).items()}
  arrays.update({f"batch/{i}/{k}": v for i, b in enumerate(batches) for k, v in b.items()})
  arrays.update({f"decode/{i}": src for i, src in enumerate(decode)})
  np.savez(os.path.join(args.setup_dir, "case.npz"), **arrays)
  return {"loss": loss, "model": model_kwargs, "label_smoothing": smoothing}


def _read_case(args):
  import numpy as np
  with np.load(os.path.join(args.setup_dir, "case.npz")) as f:
    arrays = dict(f)
  params = w.unflatten({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
  n = 1 + max(int(k.split("/")[1]) for k in arrays if k.startswith("batch/"))
  batches = [{key: arrays[f"batch/{i}/{key}"] for key in ("src", "tgt_in", "tgt_out")}
             for i in range(n)]
  decode = [arrays[k] for k in sorted((k for k in arrays if k.startswith("decode/")),
                                      key=lambda k: int(k.split("/")[1]))]
  with open(os.path.join(args.setup_dir, "setup.json")) as f:
    setup = json.load(f)
  return params, batches, decode, setup


def _check(name, loss, setup, dtype) -> dict:
  diff = abs(loss - setup["loss"]) / abs(setup["loss"])
  if diff > RTOL[dtype]:
    raise SystemExit(f"{name}: loss {loss!r} differs from s2s_jax's {setup['loss']!r} by "
                     f"{diff:.2e} (> rtol {RTOL[dtype]}): not timing it")
  return {"loss": loss, "loss_rel_diff": diff}


def _tokens(batches) -> int:
  return sum(int((b["src"] != 0).sum() + (b["tgt_out"] != 0).sum()) for b in batches)


def worker_s2s_jax(args, spec) -> dict:
  import jax
  import optax

  from s2s_jax import ModelConfig, Seq2Seq, losses, optim, search, training
  params, batches, decode, setup = _read_case(args)
  cfg = ModelConfig(**setup["model"])
  model = Seq2Seq(cfg)
  params = jax.tree.map(jax.numpy.asarray, params)
  logits = jax.jit(model.apply)({"params": params}, batches[0]["src"], batches[0]["tgt_in"])
  result = _check("s2s_jax", float(losses.mean_cross_entropy(
      logits, batches[0]["tgt_out"], label_smoothing=setup["label_smoothing"])), setup,
      spec["dtype"])
  sync = lambda: jax.effects_barrier()  # noqa: E731

  if spec["decode"]:
    result["decode"] = {}
    for mode, beam in (("greedy", 1), ("beam5", 5)):
      opts = search.SearchOptions(method="greedy" if beam == 1 else "beam", beam_size=beam,
                                     alpha=0.0)
      fns = {}
      for src in decode:
        if src.shape[1] not in fns:
          fns[src.shape[1]] = jax.jit(functools.partial(
              search.search, cfg=cfg, opts=opts, max_length=opts.output_length(src.shape[1])))
      srcs = [jax.device_put(src) for src in decode]
      out = {}

      def run(fns=fns, srcs=srcs, out=out):
        for src in srcs:
          out["last"] = fns[src.shape[1]](params, src_BS=src).tokens_BRT
        out["last"].block_until_ready()

      seconds = _timed(run, args.decode_runs, 1, sync)
      result["decode"][mode] = {"seconds": seconds,
                                "sentences_per_second": sum(map(len, decode)) / seconds["median"]}

  tx = optim.make_optimizer({"name": "adam", "clip_norm": 0.0, "accumulate_steps": 1})
  state = training.TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                              opt_state=tx.init(params), lr_scale=jax.numpy.ones(()),
                              ema_params=None, apply_fn=model.apply, tx=tx,
                              schedule=optax.constant_schedule(1e-3))
  step = jax.jit(functools.partial(training.train_step,
                                   label_smoothing=setup["label_smoothing"]), donate_argnums=0)
  batches = [jax.device_put(b) for b in batches]
  rng = jax.random.PRNGKey(1)
  holder = {"state": state}
  start = time.perf_counter()
  for b in {b["src"].shape: b for b in batches}.values():  # compile each shape
    holder["state"], metrics = step(holder["state"], b, rng)
  metrics["loss_sum"].block_until_ready()
  result["compile_seconds"] = time.perf_counter() - start

  def train_pass():
    for b in batches:
      holder["state"], m = step(holder["state"], b, rng)
    m["loss_sum"].block_until_ready()

  seconds = _timed(train_pass, args.steps, 1, sync)
  result["train"] = {"seconds_per_pass": seconds,
                     "tokens_per_second": _tokens(batches) / seconds["median"],
                     "step_ms": 1e3 * seconds["median"] / len(batches)}
  return result


def worker_torch(args, spec) -> dict:
  import contextlib

  import torch
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.allow_tf32 = False
  params, batches, decode, setup = _read_case(args)
  flat = w.flatten(params)
  torch.manual_seed(0)
  if spec["workload"] == "g2p":
    import torch_g2p as peer
    model = peer.TorchG2P(setup["model"]).to(device)
    loss_fn = functools.partial(peer.loss, label_smoothing=setup["label_smoothing"])
  else:
    import torch_seq2seq as peer
    model = peer.TorchSeq2Seq(spec["hidden"]).to(device)
    loss_fn = peer.loss
  model.load_flat(flat)
  bf16 = spec["dtype"] == "bfloat16"
  autocast = (functools.partial(torch.autocast, device.type, dtype=torch.bfloat16) if bf16
              else contextlib.nullcontext)
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  model.eval()
  with torch.no_grad(), autocast():
    result = _check("torch", float(loss_fn(model, batches[0])), setup, spec["dtype"])

  if spec["decode"]:
    result["decode"] = {}
    srcs = [torch.from_numpy(src).long().to(device) for src in decode]
    for mode, beam in (("greedy", 1), ("beam5", 5)):
      limit = (lambda S: 2 * (S - 1) + 10) if spec["workload"] == "g2p" else (lambda S: w.LENGTH)

      def run(beam=beam, limit=limit):
        for src in srcs:
          if beam == 1:
            peer.greedy(model, src, limit(src.shape[1]))
          else:
            peer.beam_search(model, src, beam, limit(src.shape[1]))

      seconds = _timed(run, args.decode_runs, 1, sync)
      result["decode"][mode] = {"seconds": seconds,
                                "sentences_per_second": sum(map(len, decode)) / seconds["median"]}

  model.train()
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

  def train_pass():
    for b in batches:
      optimizer.zero_grad(set_to_none=True)
      with autocast():
        value = loss_fn(model, b)
      value.backward()
      optimizer.step()

  seconds = _timed(train_pass, args.steps, 1, sync)
  result["train"] = {"seconds_per_pass": seconds,
                     "tokens_per_second": _tokens(batches) / seconds["median"],
                     "step_ms": 1e3 * seconds["median"] / len(batches)}
  return result


def worker_encoder(args, spec) -> dict:
  """2-layer BiLSTM forward + backward: s2s_jax's scan, jax.experimental.rnn, torch nn.LSTM."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.experimental import rnn as jrnn

  from s2s_jax import rnn
  B, T, D, H, L = spec["batch"], w.LENGTH, w.EMBED, spec["hidden"], 2
  rng = np.random.default_rng(0)
  x = rng.normal(size=(B, T, D)).astype(np.float32)
  lengths = rng.integers(T // 2, T + 1, B).astype(np.int32)
  x[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
  weights = jrnn.init_lstm_weight(jax.random.PRNGKey(0), D, H, L, True)
  W_ih, W_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(weights, D, H, L, True)
  params = {f"layer_{l}": {d: {"W_i": W_ih[2 * l + k].T, "W_h": W_hh[2 * l + k].T,
                               "b_i": b_ih[2 * l + k] + b_hh[2 * l + k]}
                           for k, d in enumerate(("fw", "bw"))} for l in range(L)}
  x, lengths = jnp.asarray(x), jnp.asarray(lengths)
  mask = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
  probe = jnp.asarray(rng.normal(size=(B, T, 2 * H)), jnp.float32)

  def scan_loss(p, x):
    out, _ = rnn.rnn_stack("lstm", p, x, lengths, bidirectional=True)
    return jnp.sum(out * probe)

  def cudnn_loss(wts, x):
    zeros = jnp.zeros((2 * L, B, H), jnp.float32)
    out, _, _ = jrnn.lstm(x, zeros, zeros, wts, lengths, D, H, L, 0.0, True)
    return jnp.sum(jnp.where(mask, out, 0.0) * probe)

  scan_out = jax.jit(lambda p, x: rnn.rnn_stack("lstm", p, x, lengths, bidirectional=True)[0])(
      params, x)
  zeros = jnp.zeros((2 * L, B, H), jnp.float32)
  result = {"backend": jax.default_backend()}
  candidates = [("s2s_jax_scan", scan_loss, params)]
  try:  # cuDNN's kernel exists on GPUs only
    cudnn_out = jax.jit(lambda wts, x: jrnn.lstm(x, zeros, zeros, wts, lengths, D, H, L, 0.0,
                                                 True)[0])(weights, x)
    result["jax_experimental_rnn_max_abs_diff_vs_scan"] = float(
        jnp.max(jnp.abs(jnp.where(mask, cudnn_out, 0.0) - scan_out)))
    candidates.append(("jax_experimental_rnn", cudnn_loss, weights))
  except Exception as e:  # noqa: BLE001 - report whatever this backend says
    result["jax_experimental_rnn_unavailable"] = f"{type(e).__name__}: {str(e)[:200]}"
  sync = lambda: jax.effects_barrier()  # noqa: E731
  for name, fn, p in candidates:
    grad = jax.jit(jax.grad(fn, argnums=(0, 1)))
    result[name] = _timed(lambda grad=grad, p=p: jax.block_until_ready(grad(p, x)), args.steps,
                          2, sync)

  import torch
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cudnn.allow_tf32 = False
  lstm = torch.nn.LSTM(D, H, L, batch_first=True, bidirectional=True).to(device)
  tx = torch.from_numpy(np.asarray(x)).to(device).requires_grad_()
  tprobe = torch.from_numpy(np.asarray(probe)).to(device)
  tlengths = torch.from_numpy(np.asarray(lengths)).long()
  sync_t = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

  def torch_step():
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, tlengths, batch_first=True,
                                                     enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    (out * tprobe).sum().backward()

  result["torch_cudnn"] = _timed(torch_step, args.steps, 2, sync_t)
  result["scan_vs_cudnn"] = result["s2s_jax_scan"]["median"] / result["torch_cudnn"]["median"]
  return result


def _run(args, worker: str, case: str) -> dict | None:
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--case", case,
         "--setup_dir", args.setup_dir, "--steps", str(args.steps), "--decode_runs",
         str(args.decode_runs)] + (["--smoke"] if args.smoke else [])
  start = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  if proc.returncode or not lines:
    print(f"[{case} {worker}] FAILED (exit {proc.returncode}):\n{proc.stderr[-2000:]}",
          file=sys.stderr, flush=True)
    return {"failed": proc.stderr[-2000:]}
  print(f"[{case} {worker}] {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
  return json.loads(lines[-1][len("RESULT "):])


def _table(results: dict) -> str:
  lines = ["| case | measurement | s2s_jax | PyTorch | s2s_jax / PyTorch |",
           "|---|---|---|---|---|"]
  for case, r in results["cases"].items():
    if case == "encoder":
      continue
    a, b = r.get("s2s_jax") or {}, r.get("torch") or {}
    rows = [("train tokens/s", ("train", "tokens_per_second"))]
    rows += [(f"{m} sentences/s", ("decode", m, "sentences_per_second"))
             for m in ("greedy", "beam5") if "decode" in a]
    for label, keys in rows:
      va, vb = a, b
      for k in keys:
        va = va.get(k) if isinstance(va, dict) else None
        vb = vb.get(k) if isinstance(vb, dict) else None
      ratio = f"{va / vb:.2f}x" if va and vb else "n/a"
      fmt = lambda v: "failed" if v is None else f"{v:,.0f}"  # noqa: E731
      lines.append(f"| {case} | {label} | {fmt(va)} | {fmt(vb)} | {ratio} |")
  enc = results["cases"].get("encoder", {}).get("encoder")
  if enc and "s2s_jax_scan" in enc:
    ms = lambda key: f"{1e3 * enc[key]['median']:.2f} ms" if key in enc else "n/a"  # noqa: E731
    diff = enc.get("jax_experimental_rnn_max_abs_diff_vs_scan")
    lines.append(
        f"\nEncoder (2-layer BiLSTM forward + backward, {enc['backend']}): s2s_jax scan "
        f"{ms('s2s_jax_scan')}, jax.experimental.rnn {ms('jax_experimental_rnn')}, torch "
        f"nn.LSTM {ms('torch_cudnn')}; scan / torch = {enc['scan_vs_cudnn']:.2f}x the time; "
        + (f"jax.experimental.rnn output vs the scan: max abs diff {diff:.1e}." if diff is not None
           else f"jax.experimental.rnn: {enc.get('jax_experimental_rnn_unavailable')}."))
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join(HERE, "results", "gpu"))
  parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
  parser.add_argument("--steps", type=int, default=None, help="timed steps (passes for g2p)")
  parser.add_argument("--decode_runs", type=int, default=None)
  parser.add_argument("--smoke", action="store_true", help="toy sizes (implied without a GPU)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--case", help=argparse.SUPPRESS)
  parser.add_argument("--setup_dir", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.worker:
    spec = _case(args.case, args.smoke)
    if args.worker == "setup":
      result = _setup(args, spec)
      with open(os.path.join(args.setup_dir, "setup.json"), "w") as f:
        json.dump(result, f)
    else:
      result = globals()[f"worker_{args.worker}"](args, spec)
    print("RESULT " + json.dumps(result), flush=True)
    return

  import tempfile

  import jax
  gpu = jax.default_backend() == "gpu"
  if not gpu and not args.smoke:
    print("no GPU found: running the CPU fallback at toy sizes (--smoke)", file=sys.stderr)
    args.smoke = True
  args.steps = args.steps or (2 if args.smoke else 10)
  args.decode_runs = args.decode_runs or (1 if args.smoke else 3)
  devices = [str(d) for d in jax.devices()]
  results = {"backend": jax.default_backend(), "devices": devices, "smoke": args.smoke,
             "jax": jax.__version__, "cases": {}}
  start = time.perf_counter()
  for case in args.cases:
    with tempfile.TemporaryDirectory() as setup_dir:
      args.setup_dir = setup_dir
      if case == "encoder":
        results["cases"][case] = {"encoder": _run(args, "encoder", case)}
        continue
      results["cases"][case] = setup = {"setup": _run(args, "setup", case)}
      if setup["setup"] and "failed" not in setup["setup"]:
        for worker in ("s2s_jax", "torch"):
          setup[worker] = _run(args, worker, case)
  results["seconds"] = time.perf_counter() - start
  os.makedirs(args.out, exist_ok=True)
  table = _table(results)
  with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(args.out, "gpu_bench.md"), "w") as f:
    f.write(f"{', '.join(devices)}; jax {jax.__version__}; {results['seconds']:.0f} s\n\n"
            f"{table}\n")
  print(table)
  print(f"\n{', '.join(devices)}; {results['seconds']:.0f} s; written to {args.out}")


if __name__ == "__main__":
  main()
