"""Interleaved A/B timing of two versions of s2s_jax on the same machine, in one run.

  python benchmarks/ab.py --base a2225c5                  # that commit (A) vs the working tree (B)
  python benchmarks/ab.py --base HEAD~3 --head HEAD --rounds 6 --only train
  python benchmarks/ab.py --base HEAD~1 --workload reference

Each version is a source tree (a git revision exported with `git archive`, or the working tree);
every measurement runs in a fresh process whose `s2s_jax` comes from that tree, while the timing
code and the workloads come from this directory, so both versions run exactly the same batches.
Rounds alternate the order (A B, B A, ...) so that drift of this machine's speed during the run
falls on both. Measured per process: the train step over all workload batches (each shape
compiled and run once first; tokens/s = real source + target tokens / seconds per pass, the best
of `--passes`) and greedy / beam-5 decoding of the decode batches (words/s). Prints the medians
over rounds and B / A ratios (> 1: B is faster), with the spread over rounds.

`--malloc` chooses glibc's malloc settings in both processes: `as_train` (default) applies
`s2s_jax.host_memory.keep_freed_memory` in a version that has it, as its train.py does, so the
ratio is what a user of train.py sees; `tuned` applies the same settings to both, so the ratio
is the code changes alone; `default` applies none.

Workloads: `g2p` (`g2p_workload.py`: configs/g2p.py on real CMUdict batches; decoding with
weights trained for `--decode_train_steps` steps, so outputs end where a trained model's do) and
`reference` (`workload.py`: vocabulary 8000, hidden 512, one batch of 64 x 30).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _workload(name: str):
  """(train batches, decode batches [B, S], ModelConfig kwargs, label smoothing, clip norm)."""
  if name == "g2p":
    import g2p_workload
    w = g2p_workload.load()
    return w.batches, w.decode_batches, w.model, w.label_smoothing, w.clip_norm
  import workload
  batch = workload.make_batch(0)
  return [batch], [batch["src"]], workload.model_config_kwargs(), 0.0, 0.0


def _train_state(model_kwargs, batch, clip_norm, learning_rate=1e-3):
  import jax

  from s2s_jax import ModelConfig, Seq2Seq, optim, training
  model = Seq2Seq(ModelConfig(**model_kwargs))
  tx = optim.make_optimizer({"name": "adam", "clip_norm": clip_norm, "accumulate_steps": 1})
  return model, training.create_train_state(
      jax.random.PRNGKey(0), model, tx, lambda s: learning_rate)


def worker(args) -> dict:
  """Runs in the tree under test (its s2s_jax first on sys.path)."""
  import functools

  import jax
  import numpy as np

  import s2s_jax
  tree = os.path.dirname(os.path.dirname(os.path.abspath(s2s_jax.__file__)))
  if tree != os.path.abspath(args.tree):
    raise SystemExit(f"imported s2s_jax from {tree}, not from the tree under test {args.tree}")
  result = {"keep_freed_memory": _malloc(args)}  # before the first computation

  from s2s_jax import ModelConfig, search, training
  batches, decode_batches, model_kwargs, smoothing, clip = _workload(args.workload)
  batches = [jax.device_put(b) for b in batches]
  if "train" in args.only:
    _, state = _train_state(model_kwargs, batches[0], clip)
    step = jax.jit(functools.partial(training.train_step, label_smoothing=smoothing),
                   donate_argnums=0)
    rng = jax.random.PRNGKey(1)
    seen = set()
    for b in batches:  # compile every shape
      if b["src"].shape not in seen:
        seen.add(b["src"].shape)
        state, metrics = step(state, b, rng)
    jax.block_until_ready(state)
    tokens = sum(int((b["src"] != 0).sum() + (b["tgt_out"] != 0).sum()) for b in batches)
    times = []
    for _ in range(args.passes):
      start = time.perf_counter()
      for b in batches:
        state, metrics = step(state, b, rng)
      jax.block_until_ready(state)
      times.append(time.perf_counter() - start)
    result["train_tokens_per_second"] = tokens / min(times)
    result["train_last_loss"] = float(metrics["loss_sum"] / metrics["tokens"])
  decode_modes = [m for m in ("greedy", "beam5") if m in args.only]
  if decode_modes:
    with np.load(args.decode_params) as f:
      flat = dict(f)
    params = _unflatten(flat)
    cfg = ModelConfig(**model_kwargs)
    for mode in decode_modes:
      opts = search.SearchOptions(method="greedy" if mode == "greedy" else "beam",
                                     beam_size=1 if mode == "greedy" else 5)
      fns = {}
      for src in decode_batches:
        S = src.shape[1]
        if S not in fns:
          fns[S] = jax.jit(functools.partial(search.search, cfg=cfg, opts=opts,
                                             max_length=opts.output_length(S)))
          fns[S](params, src_BS=src).tokens_BRT.block_until_ready()
      times = []
      for _ in range(args.passes):
        start = time.perf_counter()
        for src in decode_batches:
          out = fns[src.shape[1]](params, src_BS=src)
        out.tokens_BRT.block_until_ready()
        times.append(time.perf_counter() - start)
      words = sum(len(src) for src in decode_batches)
      result[f"{mode}_words_per_second"] = words / min(times)
  strays = sorted(name for name, module in sys.modules.items()
                  if name.startswith("s2s_jax") and getattr(module, "__file__", None)
                  and not os.path.abspath(module.__file__).startswith(os.path.abspath(tree)))
  if strays:
    raise SystemExit(f"modules imported from outside the tree under test {tree}: {strays}")
  return result


def _malloc(args) -> bool:
  """Applies `host_memory.keep_freed_memory` as `--malloc` says; whether it was applied."""
  if args.malloc == "default":
    return False
  # Look in the tree itself: with s2s_jax installed editable, a module the tree lacks would
  # still import, from the installed checkout.
  if os.path.exists(os.path.join(args.tree, "s2s_jax", "host_memory.py")):
    from s2s_jax import host_memory
  else:  # a version from before it existed
    if args.malloc == "tuned":
      import ctypes
      libc = ctypes.CDLL("libc.so.6")
      return all(libc.mallopt(p, v) == 1 for p, v in
                 ((-8, 1), (-3, 1 << 30), (-1, 1 << 30), (-2, 256 << 20)))
    return False
  return host_memory.keep_freed_memory()


def _flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _unflatten(flat):
  import jax.numpy as jnp
  tree = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = jnp.asarray(value)
  return tree


def decode_params(args, path: str) -> None:
  """Parameters for the decode measurements: `--decode_train_steps` Adam steps (lr 3e-3) on the
  workload's batches, with the head tree's s2s_jax (both versions then decode the same model)."""
  import functools

  import jax
  import numpy as np

  from s2s_jax import training
  batches, _, model_kwargs, smoothing, clip = _workload(args.workload)
  _, state = _train_state(model_kwargs, batches[0], clip, learning_rate=3e-3)
  step = jax.jit(functools.partial(training.train_step, label_smoothing=smoothing))
  rng = jax.random.PRNGKey(0)
  for k in range(args.decode_train_steps):
    state, _ = step(state, batches[k % len(batches)], rng)
  np.savez(path, **{k: np.asarray(v) for k, v in _flatten(state.params).items()})


def _export(rev: str, dest: str) -> str:
  """A clean copy of revision `rev`'s tree (or the working tree for '.')."""
  if rev == ".":
    return ROOT
  archive = subprocess.run(["git", "-C", ROOT, "archive", rev], capture_output=True, check=True)
  subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)
  return dest


def _run(tree: str, args, mode: str, extra: list[str]) -> dict:
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([tree, HERE]),
         "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
  cmd = [sys.executable, os.path.abspath(__file__), f"--{mode}", "--workload", args.workload,
         "--passes", str(args.passes), "--decode_train_steps", str(args.decode_train_steps),
         "--tree", tree, "--malloc", args.malloc, "--only", *args.only, *extra]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  if proc.returncode or not lines:
    raise SystemExit(f"{mode} in {tree} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--base", default="HEAD", help="version A: a git revision")
  parser.add_argument("--head", default=".", help="version B: a git revision, '.' = working tree")
  parser.add_argument("--workload", choices=("g2p", "reference"), default="g2p")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--passes", type=int, default=2, help="timed passes per process (best)")
  parser.add_argument("--only", nargs="+", choices=("train", "greedy", "beam5"),
                      default=["train", "greedy", "beam5"])
  parser.add_argument("--decode_train_steps", type=int, default=300)
  parser.add_argument("--malloc", choices=("as_train", "default", "tuned"), default="as_train",
                      help="glibc malloc settings of both processes: as each version's train.py "
                      "runs (host_memory.keep_freed_memory where the version has it), glibc's "
                      "defaults, or the tuned settings for both (the code changes alone)")
  parser.add_argument("--out", default=None, help="write the per-round results as JSON here")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--decode_params", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--tree", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print("RESULT " + json.dumps(worker(args)), flush=True)
    return
  if args.setup:
    decode_params(args, args.decode_params)
    print("RESULT {}", flush=True)
    return

  with tempfile.TemporaryDirectory() as tmp:
    trees = {}
    for label, rev in (("A", args.base), ("B", args.head)):
      os.makedirs(os.path.join(tmp, label))
      trees[label] = _export(rev, os.path.join(tmp, label))
    params = os.path.join(tmp, "decode_params.npz")
    extra = ["--decode_params", params]
    if any(m in args.only for m in ("greedy", "beam5")):
      _run(trees["B"], args, "setup", extra)
    rounds = []
    for r in range(args.rounds):
      order = ("A", "B") if r % 2 == 0 else ("B", "A")
      row = {label: _run(trees[label], args, "worker", extra) for label in order}
      rounds.append(row)
      print(f"round {r + 1}/{args.rounds}: " + "; ".join(
          f"{label} " + ", ".join(f"{k} {v:,.0f}" for k, v in row[label].items()
                                  if k.endswith("per_second")) for label in ("A", "B")),
            file=sys.stderr, flush=True)
  keys = [k for k in rounds[0]["A"] if k.endswith("per_second")]
  tuned = {label: rounds[0][label]["keep_freed_memory"] for label in ("A", "B")}
  print(f"\nA = {args.base}, B = {args.head}; workload {args.workload}; {args.rounds} rounds "
        f"(alternating order), best of {args.passes} passes per process; malloc {args.malloc} "
        f"(keep_freed_memory applied: A {tuned['A']}, B {tuned['B']})\n")
  print("| measurement | A (median) | B (median) | B / A (median) | B / A per round (min-max) |")
  print("|---|---|---|---|---|")
  for key in keys:
    a = statistics.median(row["A"][key] for row in rounds)
    b = statistics.median(row["B"][key] for row in rounds)
    per_round = [row["B"][key] / row["A"][key] for row in rounds]
    print(f"| {key.replace('_', ' ')} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x | "
          f"{min(per_round):.2f}-{max(per_round):.2f}x |")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"base": args.base, "head": args.head, "workload": args.workload,
                 "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
  main()
