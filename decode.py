"""Decode text with a trained model: one output line per input line, in input order.

  echo hello | python decode.py --workdir=/tmp/g2p                    # beam search, K = 5
  python decode.py --workdir=/tmp/g2p --input=words.txt --nbest=3      # TSV: index rank score text
  python decode.py --workdir=/tmp/g2p --input=words.txt --reference=prons.txt   # + WER / PER
  python decode.py --workdir=/tmp/g2p --split=test                     # a split of the run's data
  python decode.py --workdir=/tmp/g2p,/tmp/g2p_seed1 --split=test      # an ensemble of two runs
  python decode.py --workdir=/tmp/g2p --split=train --with_source --output=distilled.tsv
      # input<TAB>output lines: a training corpus for distillation (docs/distillation.md)
  python decode.py --workdir=/tmp/asr --input=wavs.txt                 # speech: one WAV path a line

For a speech model (configs/asr_words.py) each input line is the path of a WAV file (relative to
the current directory; any sample rate, resampled to the model's) and each output line its
transcript; --split decodes the run's own audio; --with_source writes path<TAB>transcript lines
(a list for the speech_files dataset).

Input comes from --input or stdin; output goes to --output or stdout. An empty input line gives an
empty output line; an input longer than --max_source_len tokens is cut (warned on stderr), never
dropped. With --reference (one line per input; several references separated by tabs) or --split,
the task metrics (WER/PER or BLEU/chrF, from the run's config) are printed to stderr as JSON.
The search flags are the fields of `s2s_jax.search.SearchOptions` (name, type, default and help);
a flag left unset keeps the run's default (for a speech model, its --max_len_ratio is the run's
train.max_decode_length_factor). A missing run, a bad input file or a bad option ends with one
line `decode.py: error: ...` and exit code 2.
"""

import json
import logging
import sys

from absl import app, flags

from s2s_jax import cli, compile_cache
from s2s_jax.data import textfiles
from s2s_jax.search import SearchOptions

_WORKDIR = flags.DEFINE_list("workdir", None, "A training run's directory; several, comma-"
                             "separated, decode as an ensemble (mean of their probabilities).")
_CHECKPOINT = flags.DEFINE_list("checkpoint", ["best"], "'best', 'last' or a step number: one "
                                "for every --workdir, or one per --workdir (comma-separated).")
_AVERAGE_LAST = flags.DEFINE_integer("average_last", 0, "N > 0: decode with the mean of the "
                                     "parameters of each --workdir's N most recent kept "
                                     "checkpoints (replaces --checkpoint).")
_INPUT = flags.DEFINE_string("input", None, "Input text file (default: stdin).")
_OUTPUT = flags.DEFINE_string("output", None, "Output file (default: stdout).")
_REFERENCE = flags.DEFINE_string("reference", None, "References, line-aligned with the input.")
_SPLIT = flags.DEFINE_string("split", None, "Decode this split of the run's dataset instead of "
                             "--input, scored against all its references.")
_WITH_SOURCE = flags.DEFINE_bool(
    "with_source", False, "Write 'input<TAB>output' lines: a TSV corpus for train.py's "
    "--config.data.train_tsv or the parallel_text dataset, e.g. a teacher's outputs on "
    "--split=train for sequence-level distillation. Empty inputs and outputs are left out "
    "(counted on stderr).")
_MAX_SOURCE_LEN = flags.DEFINE_integer("max_source_len", 256, "Longer inputs are cut (warned).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Sentences per compiled batch.")
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    "keep_freed_memory", False, "Tune glibc malloc so the CPU backend reuses freed buffers "
    "(s2s_jax/host_memory.py). Off by default here: it speeds up training steps, but decoding "
    "measured no faster with it (docs/speed.md).")
_COMPILATION_CACHE = cli.define_cache_flag()
_TRACEBACK = flags.DEFINE_bool("traceback", False, "On an input or option error, raise it with "
                               "its traceback instead of printing one line.")
_CHUNK = 4096  # lines read, decoded and written at a time
# The search flags: one per `SearchOptions` field (--method, --beam_size, --nbest, --alpha, ...).
cli.define_flags(SearchOptions)
flags.adopt_module_key_flags(cli)  # so that --help lists them with decode.py's own
_PROG = "decode.py"


def _read_lines(path: str | None, flag: str) -> list[str]:
  """The lines of `path` (stdin when None) without line endings; a line that is not UTF-8 is
  an InputError naming the file (or <stdin>) and the line."""
  if path is None:
    return [text for _, text in textfiles.stream_lines(sys.stdin.buffer, "<stdin>")]
  return [text for _, text in textfiles.read_lines(path, flag)]


def _inputs(model) -> tuple[list, list[list[str]] | None]:
  """(input lines, references per line or None); a speech split's inputs are waveforms."""
  if _SPLIT.value:
    pairs = model.split(_SPLIT.value)
    if model.is_audio:  # one pass over the audio: (waveforms, transcripts)
      audio, texts = pairs.columns()
      return audio, [[t] for t in texts]
    return pairs.columns()[0], pairs.all_references()
  lines = _read_lines(_INPUT.value, "--input")
  if _REFERENCE.value is None:
    return lines, None
  references = [line.split("\t") for line in _read_lines(_REFERENCE.value, "--reference")]
  if len(references) != len(lines):
    raise ValueError(f"--reference={_REFERENCE.value} has {len(references)} lines but the "
                     f"input has {len(lines)}")
  return lines, references


def _search_options(model) -> SearchOptions:
  """The model's default search (`Model.default_options`: the run's) with the search flags
  given on the command line replacing their fields; a flag left unset keeps the default."""
  from s2s_jax import search
  return search.with_overrides(model.default_options(), cli.given_flags(SearchOptions))


def _nonempty(item) -> bool:
  """An input that has an output: a non-blank line, or a waveform with samples."""
  return bool(item.strip()) if isinstance(item, str) else len(item) > 0


def _check_flags() -> list[str]:
  """The --checkpoint value for every --workdir; refuses flag combinations that conflict."""
  if not _WORKDIR.value:
    cli.fail(_PROG, "--workdir is required")
  checkpoints = _CHECKPOINT.value or ["best"]
  if len(checkpoints) == 1:
    checkpoints = checkpoints * len(_WORKDIR.value)
  if len(checkpoints) != len(_WORKDIR.value):
    cli.fail(_PROG, f"--checkpoint has {len(checkpoints)} values for {len(_WORKDIR.value)} "
             "--workdir values; give one, or one per workdir")
  if _AVERAGE_LAST.value and set(checkpoints) != {"best"}:
    cli.fail(_PROG, "--average_last replaces --checkpoint; give one or the other")
  if _SPLIT.value and (_INPUT.value or _REFERENCE.value):
    cli.fail(_PROG, "--split replaces --input and --reference; give one or the other")
  if _WITH_SOURCE.value and flags.FLAGS.nbest > 1:
    cli.fail(_PROG, "--with_source writes one output per input; it needs --nbest=1")
  return checkpoints


def _load(checkpoints: list[str]):
  from s2s_jax import inference
  models = [inference.load(w, c, average_last=_AVERAGE_LAST.value)
            for w, c in zip(_WORKDIR.value, checkpoints, strict=True)]
  for workdir, m in zip(_WORKDIR.value, models, strict=True):
    if m.averaged_steps:
      print(f"{_PROG}: {workdir}: the mean of checkpoint steps {list(m.averaged_steps)}",
            file=sys.stderr)
  return models[0] if len(models) == 1 else inference.ensemble(models)


def _warn(result, line: int) -> None:
  if result.truncated:
    print(f"{_PROG}: warning: input line {line} is longer than --max_source_len="
          f"{_MAX_SOURCE_LEN.value} tokens; decoded its first {_MAX_SOURCE_LEN.value - 1}",
          file=sys.stderr)
  if result.unknown:
    print(f"{_PROG}: warning: input line {line} has {', '.join(map(repr, result.unknown))}, "
          "never seen in training: read as <unk>", file=sys.stderr)


def _write(out, result, index: int) -> None:
  """One input's output: a line, a corpus line (--with_source) or n-best TSV rows."""
  if _WITH_SOURCE.value:
    if result.text.strip():  # a line with an empty side is not a training pair
      out.write(f"{result.source}\t{result.text}\n")
  elif flags.FLAGS.nbest == 1:
    out.write(result.text + "\n")
  elif not result.hypotheses:  # an empty input: one row with the empty output
    out.write(f"{index}\t1\t0.0\t\n")
  for rank, hyp in enumerate(result.hypotheses if flags.FLAGS.nbest > 1 else (), start=1):
    out.write(f"{index}\t{rank}\t{hyp.score:.4f}\t{hyp.text}\n")


def _decode_all(model, lines: list[str], out) -> tuple[list[str], list[int]]:
  """Decodes and writes every line, chunk by chunk; returns (best outputs, line numbers of
  non-empty inputs decoded to nothing)."""
  import tqdm
  options = _search_options(model)
  best, empty_outputs = [], []
  with tqdm.tqdm(total=len(lines), unit=" lines", disable=None, file=sys.stderr) as progress:
    for start in range(0, len(lines), _CHUNK):
      results = model.decode(lines[start:start + _CHUNK], options,
                             max_source_len=_MAX_SOURCE_LEN.value, seed=_SEED.value,
                             batch_size=_BATCH_SIZE.value)
      for i, result in enumerate(results, start=start):
        _warn(result, i + 1)
        best.append(result.text)
        if result.hypotheses and not result.text.strip():
          empty_outputs.append(i + 1)
        _write(out, result, i)
      out.flush()
      progress.update(len(results))
  return best, empty_outputs


def _run(checkpoints: list[str]) -> None:
  from s2s_jax import metrics
  model = _load(checkpoints)
  if model.is_audio and _WITH_SOURCE.value and _SPLIT.value:
    # A split's audio has no path to write; decoding a list of WAV paths with --with_source
    # writes path<TAB>transcript lines, a speech_files list.
    raise ValueError("--with_source with --split needs a text model: a speech split's audio "
                     "has no path to write (give --input with WAV paths instead)")
  lines, references = _inputs(model)
  # The library's summaries of cut and unseen inputs (0-based indices) repeat what `_warn`
  # says per input line; short audio is in the empty-output warning below.
  logging.getLogger("s2s_jax.decode_io").setLevel(logging.ERROR)
  out = sys.stdout if _OUTPUT.value is None else open(_OUTPUT.value, "w", encoding="utf-8")  # noqa: SIM115
  try:
    best, empty_outputs = _decode_all(model, lines, out)
  finally:
    if out is not sys.stdout:
      out.close()
  if empty_outputs:
    lines_named = f"{empty_outputs[:10]}{' ...' if len(empty_outputs) > 10 else ''}"
    print(f"{_PROG}: warning: {len(empty_outputs)} non-empty inputs decoded to an empty output "
          f"(input lines {lines_named})"
          + ("; --with_source left them out of the corpus" if _WITH_SOURCE.value else ""),
          file=sys.stderr)
  if references is not None:
    metric = model.config.get("train", {}).get("eval_metric", "bleu")
    scored = [(h, r) for h, r, line in zip(best, references, lines, strict=True)
              if _nonempty(line)]
    scores = metrics.task_scores(metric, *zip(*scored, strict=True)) if scored else {}
    print(json.dumps({"decoded": len(scored), **scores}), file=sys.stderr)


def main(argv):
  if len(argv) > 1:
    cli.fail(_PROG, f"unexpected arguments: {argv[1:]}")
  if _KEEP_FREED_MEMORY.value:  # before the first computation creates JAX's CPU threads
    from s2s_jax import host_memory
    host_memory.keep_freed_memory()
  cli.setup_logging()
  compile_cache.enable(_COMPILATION_CACHE.value)
  checkpoints = _check_flags()
  cli.run(_PROG, lambda: _run(checkpoints), traceback=_TRACEBACK.value)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.flags_parser("decode.py"))
