"""What train.py and decode.py share: quiet library logs, the run's own short lines, and user
errors as one line `<prog>: error: <message>` with exit code 2.

Orbax, tfds, grain and absl log through absl or the root logger; they are held at WARNING
unless `--verbosity` (absl's flag) is given. s2s_jax's modules log to `logging.getLogger(
"s2s_jax...")`; here those lines go to stderr as plain messages (INFO; DEBUG adds per-step
records when there is no progress bar).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import typing
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from absl import flags
from absl import logging as absl_logging

from s2s_jax import compile_cache

log = logging.getLogger(__name__)

T = TypeVar("T")

# Mistakes in a config, a flag or an input file: the message says what and where. Anything
# else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def setup_logging() -> None:
  """Library logs at WARNING unless --verbosity was given; s2s_jax's at INFO (DEBUG with
  --verbosity=1 or more), one plain line each on stderr."""
  verbosity = flags.FLAGS["verbosity"]
  if not verbosity.present:
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
  logging.getLogger("absl").addFilter(_not_noise)
  ours = logging.getLogger("s2s_jax")
  ours.setLevel(logging.DEBUG if verbosity.present and verbosity.value >= 1 else logging.INFO)
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(logging.Formatter("%(message)s"))
  ours.handlers[:] = [handler]
  ours.propagate = False


# Library records that only repeat or mislead: tfds warns about what every local (offline)
# build does (a config object of its own; a version folder with no dataset_info.json before
# its first preparation), and Orbax's background threads log a full disk with tracebacks
# (checkpoint.py reports it in one line).
_NOISE = ("Using custom data configuration", "has no dataset_info.json",
          "No space left on device")


def _not_noise(record: logging.LogRecord) -> bool:
  message = record.getMessage()
  if record.exc_info and record.exc_info[1] is not None:
    message += str(record.exc_info[1])
  if not any(text in message for text in _NOISE):
    return True
  return "No space left" in message and "orbax" not in record.pathname


def fail(prog: str, message: str) -> NoReturn:
  """Prints the message as one line `<prog>: error: ...` and exits with code 2."""
  print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
  sys.exit(2)


def run(prog: str, fn: Callable[[], T], *, traceback: bool = False) -> T:
  """`fn()`, with a user error (`USER_ERRORS`) reported as one line and exit code 2; with
  `traceback`, the error propagates (with its stack) instead."""
  try:
    return fn()
  except USER_ERRORS as e:
    if traceback:
      raise
    fail(prog, str(e) or type(e).__name__)


_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           bool: flags.DEFINE_bool}


def define_flags(options_class: type, flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """One absl flag per field of the dataclass `options_class`: the field's name, type and
  default, its `metadata['help']`, and `metadata['choices']` (an enum flag) when set."""
  types = typing.get_type_hints(options_class)
  for field in dataclasses.fields(options_class):
    help_text, choices = field.metadata.get("help", ""), field.metadata.get("choices")
    if choices:
      flags.DEFINE_enum(field.name, field.default, list(choices), help_text,
                        flag_values=flag_values)
    else:
      _DEFINE[types[field.name]](field.name, field.default, help_text, flag_values=flag_values)


def given_flags(options_class: type, flag_values: flags.FlagValues = flags.FLAGS
                ) -> dict[str, Any]:
  """{field: value} of the `define_flags` flags given on the command line (an unset flag is
  left to whatever default the caller starts from)."""
  return {f.name: flag_values[f.name].value for f in dataclasses.fields(options_class)
          if flag_values[f.name].present}


def flags_parser(prog: str) -> Callable[[list[str]], list[str]]:
  """`app.run`'s `flags_parser`: absl's own flag errors (unknown flag, bad value) as one line
  and exit code 2, like every other user error."""

  def parse(argv: list[str]) -> list[str]:
    try:
      return flags.FLAGS(argv)
    except (flags.Error, OSError) as e:  # OSError: --config's file failed to load
      fail(prog, str(e))

  return parse


def define_config_file(prog: str, default: str, help_text: str) -> Any:
  """`config_flags.DEFINE_config_file("config", ...)`, which reads the `--config.<field>`
  overrides at once: a field the config lacks is one line naming the flag, exit code 2."""
  from ml_collections import config_flags  # train.py's alone: decode.py does not need it
  try:
    return config_flags.DEFINE_config_file("config", default, help_text)
  except (AttributeError, KeyError) as e:
    raw = str(e.args[0] if e.args else e)
    key = re.sub(r"[\\'\"]", "", raw.replace("\\n", "\n").splitlines()[0]).strip()
    close = re.search(r"Did you mean \W*([\w.]+)", raw)
    hint = f"; did you mean {close.group(1)!r}?" if close else ""
    named = [a.split("=")[0] for a in sys.argv[1:]
             if a.startswith("--config.") and key in a.split("=")[0].split(".")]
    fail(prog, f"{', '.join(named) or '--config'}: the config has no field {key!r}{hint}")


def define_cache_flag() -> flags.FlagHolder:
  """--compilation_cache: the directory `main` passes to `compile_cache.enable`."""
  return flags.DEFINE_string(
      "compilation_cache", compile_cache.default_directory(),
      "JAX's persistent compilation cache: a second run of the same model and shapes loads its "
      "compiled programs instead of compiling them again (on CPU, most of a short decode's "
      "time). Empty: off.")
