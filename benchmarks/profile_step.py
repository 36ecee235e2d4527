"""Where the g2p train step's time goes: a profile of the compiled step, kernel by kernel.

  python benchmarks/profile_step.py [--shape 256x8] [--steps 10] [--kernels 12]

Compiles s2s_jax's train step (`training.train_step`, the configs/g2p.py model, label smoothing
and dropout on, malloc set as train.py sets it) for one batch shape of the g2p workload
(`g2p_workload.py`), runs it under `jax.profiler`, and attributes every executed kernel to a
part of the model through the compiled HLO: each kernel's op name says whether it belongs to the
forward pass (`jvp`) or the backward pass (`transpose`), to `Seq2Seq.encode` or
`Seq2Seq.decode`, and whether it runs inside a loop body (`while/body`). Prints wall time per
step, kernel time per part, and the decoder loops' kernels (what each computes, calls and time
per step). Kernel times overlap when XLA runs independent kernels on both cores, so the parts
add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if not any(os.path.isdir(os.path.join(p, "s2s_jax")) for p in sys.path if p):
  sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

import g2p_workload  # noqa: E402

CONTAINERS = ("while", "conditional", "call")
_COMP = re.compile(r"^(?:ENTRY )?%?([\w.-]+) \(.*\{$")
_INST = re.compile(r"^\s+(?:ROOT )?%?([\w.-]+) = ")
_OPCODE = re.compile(r" ?([\w-]+)\(")
_CALLS = re.compile(r"(?:calls|body|condition|to_apply)=%?([\w.-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_KIND = re.compile(r'"kind":"(\w+)"|kind=(k\w+)')


def parse_hlo(text: str) -> dict[str, dict]:
  """Instruction name -> {opcode, shape, op_name, kind, in_loop, outer_loop (the outermost
  `while` it runs in)}; op names inherited from the calling
  instruction where the compiler left none (loop plumbing, fusion internals)."""
  insts, comp_of, caller_of = {}, {}, {}
  comp = None
  for line in text.splitlines():
    m = _COMP.match(line)
    if m:
      comp = m.group(1)
      continue
    m = _INST.match(line)
    if not m or comp is None:
      continue
    name, shape, rest = m.group(1), *_split_shape(line[m.end():])
    opcode = _OPCODE.match(rest)
    opcode = opcode.group(1) if opcode else "?"
    op_name = _OP_NAME.search(line)
    kind = _KIND.search(line)
    insts[name] = {"opcode": opcode, "shape": shape,
                   "op_name": op_name.group(1) if op_name else "",
                   "kind": (kind.group(1) or kind.group(2)) if kind else ""}
    comp_of[name] = comp
    for callee in _CALLS.findall(line):
      caller_of.setdefault(callee, name)

  def inherited(name, depth=0):
    inst = insts[name]
    if inst["op_name"] or depth > 20:
      return inst["op_name"]
    caller = caller_of.get(comp_of[name])
    return inherited(caller, depth + 1) if caller else ""

  for name, inst in insts.items():
    inst["outer_loop"] = _outer_loop(name, comp_of, caller_of, insts)
    inst["in_loop"] = inst["outer_loop"] is not None
    if not inst["op_name"]:
      inst["op_name"] = inherited(name)
  return insts


def _split_shape(text: str) -> tuple[str, str]:
  """'f32[2,3]{1,0} dot(...' or '(s32[], f32[2]) while(...' -> (shape, the rest)."""
  if not text.startswith("("):
    shape, _, rest = text.partition(" ")
    return shape, rest
  depth = 0
  for k, ch in enumerate(text):
    depth += {"(": 1, ")": -1}.get(ch, 0)
    if depth == 0:
      return text[:k + 1], text[k + 1:]
  return text, ""


def _outer_loop(name, comp_of, caller_of, insts) -> str | None:
  """The outermost `while` instruction that runs `name` (None outside every loop)."""
  outer, comp, seen = None, comp_of[name], 0
  while comp in caller_of and seen < 30:
    caller = caller_of[comp]
    if insts[caller]["opcode"] == "while":
      outer = caller
    comp, seen = comp_of[caller], seen + 1
  return outer


def part_of(inst: dict) -> str:
  """forward/backward + model part of one kernel."""
  op = inst["op_name"]
  if "threefry" in op or "bernoulli" in op or "random_bits" in op:
    return "dropout masks (random bits)"
  phase = "backward" if "transpose(" in op else "forward" if "jvp(" in op else None
  if phase is None:
    return "optimizer, clipping, metrics"
  if "Seq2Seq.encode" in op:
    return f"{phase}: encoder" + (" loop" if inst["in_loop"] else " outside loops")
  if "Seq2Seq.decode" in op or "Seq2Seq.__call__" in op:
    return f"{phase}: decoder" + (" loop" if inst["in_loop"] else " outside loop (embedding, "
                                  "readout/output projection)")
  return f"{phase}: loss"


def describe(name: str, inst: dict) -> str:
  op = inst["op_name"].split("/")
  tail = "/".join(op[-2:]) if op else ""
  if inst["opcode"] == "dot" or "dot_general" in tail:
    kind = "matmul"
  elif inst["kind"] == "__ynn_fusion":
    kind = "YNNPACK fusion"
  else:
    kind = inst["opcode"]
  return f"{kind} {inst['shape']} ({tail})"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", default="256x8", help="rows x length of the batches profiled")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--kernels", type=int, default=14, help="decoder-loop kernels listed")
  parser.add_argument("--json", default=None, help="also write the breakdown here")
  parser.add_argument("--default_malloc", action="store_true",
                      help="leave glibc's malloc settings (train.py applies keep_freed_memory)")
  args = parser.parse_args()

  from s2s_jax import host_memory
  if not args.default_malloc:
    host_memory.keep_freed_memory()  # as train.py does, before the first computation
  import jax

  from s2s_jax import ModelConfig, Seq2Seq, optim, training

  work = g2p_workload.load()
  rows, length = map(int, args.shape.split("x"))
  batches = [b for b in work.batches if b["src"].shape == (rows, length)]
  if not batches:
    shapes = sorted({b["src"].shape for b in work.batches})
    raise SystemExit(f"no batch of shape {rows}x{length}; the workload has {shapes}")
  batches = [jax.device_put(b) for b in (batches * args.steps)[:args.steps]]
  model = Seq2Seq(ModelConfig.from_dict(work.model))
  tx = optim.make_optimizer({"name": "adam", "clip_norm": work.clip_norm, "accumulate_steps": 1})
  state = training.create_train_state(
      jax.random.PRNGKey(0), model, tx, lambda s: work.learning_rate)
  step = jax.jit(functools.partial(training.train_step, label_smoothing=work.label_smoothing),
                 donate_argnums=0)
  rng = jax.random.PRNGKey(1)
  compiled = step.lower(state, batches[0], rng).compile()
  insts = parse_hlo(compiled.as_text())
  for _ in range(2):
    state, _ = compiled(state, batches[0], rng)
  jax.block_until_ready(state)

  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      start = time.perf_counter()
      for batch in batches:
        state, _ = compiled(state, batch, rng)
      jax.block_until_ready(state)
      wall = (time.perf_counter() - start) / len(batches)
    trace = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(trace) as f:
      events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]

  per_part, per_kernel, calls = collections.Counter(), collections.Counter(), collections.Counter()
  for e in events:
    inst = insts.get(e["name"])
    if inst is None or inst["opcode"] in CONTAINERS:
      continue
    seconds = e["dur"] / 1e6 / len(batches)
    per_part[part_of(inst)] += seconds
    per_kernel[e["name"]] += seconds
    calls[e["name"]] += 1 / len(batches)
  kernel_total = sum(per_part.values())
  print(f"batch {rows}x{length}: wall {1e3 * wall:.1f} ms per step; kernel time "
        f"{1e3 * kernel_total:.1f} ms ({len(per_kernel)} kernels, "
        f"{sum(calls.values()):.0f} launches per step)\n")
  print("| part | kernel ms / step | share |\n|---|---|---|")
  for part, seconds in per_part.most_common():
    print(f"| {part} | {1e3 * seconds:.1f} | {seconds / kernel_total:.0%} |")
  loops = {}
  for phase in ("forward", "backward"):
    names = [n for n in per_kernel if part_of(insts[n]) == f"{phase}: decoder loop"]
    loops[phase] = names
    total = sum(per_kernel[n] for n in names)
    print(f"\nDecoder loop, {phase}: {len(names)} kernels per step of the scan, "
          f"{1e3 * total:.1f} ms per train step\n")
    print("| kernel | what | calls / step | ms / step | share of loop |\n|---|---|---|---|---|")
    for n in sorted(names, key=per_kernel.get, reverse=True)[:args.kernels]:
      print(f"| {n} | {describe(n, insts[n])} | {calls[n]:.0f} | {1e3 * per_kernel[n]:.2f} | "
            f"{per_kernel[n] / total:.0%} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"shape": [rows, length], "wall_seconds": wall, "parts": dict(per_part),
                 "kernels": {n: {"seconds": per_kernel[n], "calls": calls[n],
                                 "what": describe(n, insts[n]), "part": part_of(insts[n])}
                             for n in per_kernel}}, f, indent=1)


if __name__ == "__main__":
  main()
