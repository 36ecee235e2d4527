"""Where a beam-search decode's time goes: a profile of the compiled search, kernel by kernel.

  python benchmarks/profile_decode.py [--workload reference|g2p] [--beam 5] [--runs 5]

Compiles `search.search` (beam 5, alpha 0, the settings of benchmarks/run.py) for the reference
workload (benchmarks/workload.py: 64 sentences, vocabulary 8000, 2-layer LSTM 512, Luong dot
attention, untrained weights, outputs to the 30-token limit) or the g2p one (the configs/g2p.py
model on the 256 x 8 CMUdict batches of g2p_workload.py, untrained weights), runs it under
`jax.profiler`, and attributes every executed kernel through the compiled HLO's op names: the
beam loop's named scopes (`decoding.beam_search`: the step function, log-softmax, candidate
selection, the hypothesis history, reordering the carry by parent beam, the finished n-best),
the step's matmuls by what they compute (the output projection is the one whose result has V
columns), and what runs once outside the loop (encoder, tiling). Prints wall time per decode,
loop iterations, the bytes the reorder moves per iteration, kernel time per part, and the matmul
FLOPs against the machine's measured f32 matmul rate. Kernel times overlap when XLA runs
independent kernels on both cores, so the parts can add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if not any(os.path.isdir(os.path.join(p, "s2s_jax")) for p in sys.path if p):
  sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

import profile_step  # noqa: E402

SCOPES = ("beam_step", "log_softmax", "beam_select", "beam_history", "beam_reorder",
          "beam_finished")
WHAT = {"beam_step": "step function", "log_softmax": "log-softmax over V",
        "beam_select": "candidate selection (top-k)", "beam_history": "hypothesis history",
        "beam_reorder": "reorder the carry by parent beam",
        "beam_finished": "finished n-best bookkeeping"}


def part_of(inst: dict, in_beam_loop: bool, rows: int, vocab: int) -> str:
  """The part of a beam decode one kernel belongs to. Kernels whose op names lost their scope
  (XLA's fusions keep one op's name) are told apart by shape: the step's work has one row per
  hypothesis."""
  if not in_beam_loop:
    return "once: encoder (its own scan), tiling, setup"
  op, shape = inst["op_name"], inst["shape"]
  if shape.startswith(f"f32[{rows},{vocab}]") and (inst["kind"] in ("__ynn_fusion", "kCustom")
                                                  or inst["opcode"] == "dot"):
    return "step: output projection (fused with the log-softmax's max)"
  scope = next((s for s in SCOPES if f"/{s}/" in op or op.endswith(f"/{s}")), None)
  is_matmul = inst["opcode"] == "dot" or "dot_general" in op
  if scope == "beam_step" or (scope is None and shape.startswith(f"f32[{rows},")):
    return "step: LSTM, attention, readout matmuls" if is_matmul else \
        "step: elementwise (gates, attention softmax, embedding)"
  if scope is None:
    return "loop control, stopping rule"
  return WHAT[scope]


def _setup(workload: str):
  """(model config, params, source batch [B, S], max_length)."""
  import jax
  import numpy as np

  from s2s_jax import ModelConfig, Seq2Seq
  if workload == "reference":
    import workload as w
    cfg = ModelConfig(**w.model_config_kwargs())
    src = np.asarray(w.make_batch()["src"])
    max_length = w.LENGTH
  else:
    import g2p_workload
    work = g2p_workload.load()
    cfg = ModelConfig.from_dict(work.model)
    src = np.asarray(next(b["src"] for b in work.batches if b["src"].shape == (256, 8)))
    max_length = 20
  params = Seq2Seq(cfg).init(jax.random.PRNGKey(0), method=Seq2Seq.create_params)["params"]
  return cfg, params, jax.numpy.asarray(src), max_length


def _step_flops(cfg, rows: int, source_len: int) -> float:
  """Matmul FLOPs of one decoder step over `rows` rows (embedding lookups not counted)."""
  H, V = cfg.hidden_size, cfg.tgt_vocab_size
  D = cfg.memory_size
  lstm = sum(2 * rows * ((cfg.decoder_input_size if layer == 0 else H) + H) * 4 * H
             for layer in range(cfg.decoder_layers))
  attention = 2 * 2 * rows * source_len * D
  if cfg.attention_score == "general":
    attention += 2 * rows * H * D
  readout = 2 * rows * (H + D) * cfg.readout_size
  output = 2 * rows * cfg.readout_size * V
  return lstm + attention + readout + output


def _matmul_rate(n: int = 2048, runs: int = 5) -> float:
  """This machine's f32 matmul rate (GFLOP/s), best of `runs` (as run.py's `peak`, smaller)."""
  import jax
  import jax.numpy as jnp
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(runs):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best / 1e9


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workload", choices=("reference", "g2p"), default="reference")
  parser.add_argument("--beam", type=int, default=5)
  parser.add_argument("--runs", type=int, default=5, help="profiled decodes")
  parser.add_argument("--kernels", type=int, default=12, help="loop kernels listed")
  parser.add_argument("--json", default=None, help="also write the breakdown here")
  args = parser.parse_args()

  from s2s_jax import host_memory
  host_memory.keep_freed_memory()  # as train.py and decode.py run
  import jax
  import numpy as np

  from s2s_jax import search
  cfg, params, src, max_length = _setup(args.workload)
  opts = search.SearchOptions(beam_size=args.beam, alpha=0.0, max_len=max_length,
                              max_len_ratio=10.0, max_len_offset=max_length)
  fn = jax.jit(lambda p, s: search.search(p, cfg, s, opts, max_length))
  compiled = fn.lower(params, src).compile()
  insts = profile_step.parse_hlo(compiled.as_text())
  out = compiled(params, src)
  jax.block_until_ready(out)

  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      start = time.perf_counter()
      for _ in range(args.runs):
        out = compiled(params, src)
        jax.block_until_ready(out)
      wall = (time.perf_counter() - start) / args.runs
    trace = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(trace) as f:
      events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]

  V = cfg.tgt_vocab_size
  B, S = src.shape
  N = B * args.beam
  # The beam loop is the while that holds the step's scope (the encoder's scans are others).
  beam_loop = collections.Counter(i["outer_loop"] for i in insts.values()
                                  if "/beam_step" in i["op_name"]).most_common(1)[0][0]

  def part_name(name: str) -> str:
    return part_of(insts[name], insts[name]["outer_loop"] == beam_loop, N, V)

  per_part, per_kernel, calls = collections.Counter(), collections.Counter(), collections.Counter()
  for e in events:
    inst = insts.get(e["name"])
    if inst is None or inst["opcode"] in profile_step.CONTAINERS:
      continue
    per_part[part_name(e["name"])] += e["dur"] / 1e6 / args.runs
    per_kernel[e["name"]] += e["dur"] / 1e6 / args.runs
    calls[e["name"]] += 1 / args.runs
  # The loop's iterations: how often its output projection ran per decode.
  projection = [n for n in per_kernel if part_name(n).startswith("step: output")]
  iterations = max((calls[n] for n in projection), default=0)
  longest = int(np.asarray(out.length_BR).max())
  carry = jax.eval_shape(lambda p, s: search.model_lib.encode(p, cfg, s).initial_carry, params,
                         src)
  carry_bytes = sum(np.prod(x.shape[1:]) * x.dtype.itemsize for x in jax.tree.leaves(carry)) * N
  flops = _step_flops(cfg, N, S) * iterations
  rate = _matmul_rate()
  kernel_total = sum(per_part.values())
  report = {
      "workload": args.workload, "beam": args.beam, "sentences": B, "rows": N,
      "wall_seconds_per_decode": wall, "kernel_seconds_per_decode": kernel_total,
      "loop_iterations": iterations, "longest_output": longest, "max_length": max_length,
      "reorder_bytes_per_iteration": int(carry_bytes),
      "history_bytes_per_iteration": int(B * 2 * args.beam * max_length * 4),
      "matmul_gflop_per_decode": flops / 1e9, "machine_matmul_gflops": rate,
      "matmul_floor_seconds": flops / 1e9 / rate,
      "parts": dict(per_part.most_common())}
  print(f"{args.workload}, beam {args.beam}, {B} sentences ({N} rows): wall "
        f"{1e3 * wall:.0f} ms per decode; kernel time {1e3 * kernel_total:.0f} ms; "
        f"{iterations:.0f} loop iterations (longest output {longest}, limit {max_length})")
  print(f"reorder moves {carry_bytes / 1e3:.0f} kB of carry per iteration (the encoder memory "
        f"and keys are loop constants, not reordered); the history buffer is "
        f"{report['history_bytes_per_iteration'] / 1e3:.0f} kB")
  print(f"matmuls: {flops / 1e9:.1f} GFLOP per decode; at this machine's {rate:.0f} GFLOP/s "
        f"f32 matmul rate that is {1e3 * flops / 1e9 / rate:.0f} ms, "
        f"{flops / 1e9 / rate / wall:.0%} of the wall time\n")
  print("| part | kernel ms / decode | share |\n|---|---|---|")
  for part, seconds in per_part.most_common():
    print(f"| {part} | {1e3 * seconds:.1f} | {seconds / kernel_total:.0%} |")
  looped = sorted((n for n in per_kernel if insts[n]["outer_loop"] == beam_loop),
                  key=per_kernel.get, reverse=True)
  print("\n| loop kernel | part | what | calls / decode | ms / decode |\n|---|---|---|---|---|")
  for n in looped[:args.kernels]:
    print(f"| {n} | {part_name(n)} | {profile_step.describe(n, insts[n])} | "
          f"{calls[n]:.0f} | {1e3 * per_kernel[n]:.1f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
