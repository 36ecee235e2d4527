"""Train a sequence-to-sequence model; resumes automatically from the workdir.

  python train.py --workdir=/tmp/g2p                                # CMUdict G2P (configs/g2p.py)
  python train.py --config=configs/translate.py --workdir=/tmp/mt --config.model.hidden_size=256

The terminal shows the run's own lines (data, evaluations, checkpoints) and a progress bar;
`--verbosity=0` adds the libraries' INFO logs, `--verbosity=1` per-step records too. A bad config
value or input file ends the run with one line `train.py: error: ...` and exit code 2
(`--traceback` shows where it was raised).
"""

import json
import os

from absl import app, flags

from s2s_jax import cli, compile_cache, host_memory, training

_CONFIG = cli.define_config_file(
    "train.py", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "g2p.py"),
    "Training config file (default: configs/g2p.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and vocabularies.")
flags.mark_flag_as_required("workdir")
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    "keep_freed_memory", True, "Tune glibc malloc so the CPU backend reuses freed step buffers "
    "instead of faulting in fresh pages every step (s2s_jax/host_memory.py).")
_COMPILATION_CACHE = cli.define_cache_flag()
_TRACEBACK = flags.DEFINE_bool("traceback", False, "On a config or input error, raise it with "
                               "its traceback instead of printing one line.")


def main(argv):
  if len(argv) > 1:
    cli.fail("train.py", f"unexpected arguments: {argv[1:]}")
  if _KEEP_FREED_MEMORY.value:  # before the first computation creates JAX's CPU threads
    host_memory.keep_freed_memory()
  cli.setup_logging()
  compile_cache.enable(_COMPILATION_CACHE.value)
  result = cli.run("train.py", lambda: training.train_and_evaluate(_CONFIG.value, _WORKDIR.value),
                   traceback=_TRACEBACK.value)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.flags_parser("train.py"))
