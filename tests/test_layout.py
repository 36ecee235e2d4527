"""The floor plan: README's "Where things are" table says which s2s_jax modules each module may
import; the code must keep to it, and every module must have its row."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "s2s_jax"


def _map() -> dict[str, set[str]]:
  """{'s2s_jax/x.py' or 's2s_jax/data/': the module names it may import} from README."""
  rules = {}
  for line in (ROOT / "README.md").read_text().splitlines():
    row = re.fullmatch(r"\| `(s2s_jax/[\w/.]+)` \|.*\| ([\w ,]+) \|", line)
    if row:
      allowed = row.group(2).strip()
      rules[row.group(1)] = set() if allowed == "nothing" else {
          name.strip() for name in allowed.split(",")}
  return rules


def _imports(path: pathlib.Path) -> set[str]:
  """The s2s_jax modules a file imports (anywhere in it), as top-level names: `data` for
  `s2s_jax.data.tokenizers`, `model` for `from s2s_jax import model` or `from s2s_jax.model`."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "s2s_jax":
      parts = node.module.split(".")
      names.update(parts[1:2] if len(parts) > 1 else (a.name for a in node.names))
    elif isinstance(node, ast.Import):
      names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("s2s_jax."))
  return names


def _row(rules: dict[str, set[str]], path: pathlib.Path) -> str | None:
  relative = path.relative_to(ROOT).as_posix()
  if relative in rules:
    return relative
  directory = relative.rsplit("/", 1)[0] + "/"
  return directory if directory in rules else None


def test_readme_map_parses_into_rows_for_the_core_modules():
  rules = _map()
  assert rules["s2s_jax/rnn.py"] == set()
  assert rules["s2s_jax/training.py"] >= {"checkpoint", "optim", "parallel"}
  assert "s2s_jax/data/" in rules


def test_every_module_has_a_row_and_imports_only_what_its_row_allows():
  rules = _map()
  problems = []
  for path in sorted(PACKAGE.rglob("*.py")):
    if path == PACKAGE / "__init__.py":  # the package's front: re-exports, lazy `load`
      continue
    row = _row(rules, path)
    if row is None:
      problems.append(f"{path.relative_to(ROOT)} has no row in README's 'Where things are'")
      continue
    extra = _imports(path) - rules[row] - {path.stem}
    if extra:
      problems.append(f"{path.relative_to(ROOT)} imports {sorted(extra)}, which its row "
                      f"({row}: {sorted(rules[row]) or 'nothing'}) does not allow")
  assert not problems, "\n".join(problems)


def test_the_import_check_catches_a_forbidden_import(tmp_path):
  # The checker itself: a low-level module that imports the training loop is reported.
  bad = tmp_path / "rnn.py"
  bad.write_text("import jax\nfrom s2s_jax import training\nfrom s2s_jax.data import pipeline\n")
  assert _imports(bad) == {"training", "data"}
  assert _imports(bad) - _map()["s2s_jax/rnn.py"] == {"training", "data"}


def test_every_row_of_the_map_names_a_module_that_exists():
  missing = [row for row in _map() if not (ROOT / row).exists()]
  assert not missing, f"README's 'Where things are' names {missing}, which do not exist"


MAX_FUNCTION_LINES = 60
# The modules whose size the last refactor set (issue 34): a file past its budget has grown a
# second subject and should be split, as model_config.py and decode_io.py were.
MAX_MODULE_LINES = {"s2s_jax/model.py": 400, "s2s_jax/inference.py": 350}


def _functions(path: pathlib.Path):
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_of_the_package_or_the_command_lines_is_over_60_lines():
  paths = [*sorted(PACKAGE.rglob("*.py")), ROOT / "train.py", ROOT / "decode.py"]
  long = [f"{p.relative_to(ROOT)}:{line} {name} ({n} lines)"
          for p in paths for name, line, n in _functions(p) if n > MAX_FUNCTION_LINES]
  assert not long, "\n".join(long)


def test_the_function_length_check_counts_a_long_function(tmp_path):
  path = tmp_path / "long.py"
  path.write_text("def f():\n" + "  x = 1\n" * 61 + "\n\ndef g():\n  return 2\n")
  assert [(name, n) for name, _, n in _functions(path)] == [("f", 62), ("g", 2)]


def test_the_model_and_inference_modules_stay_within_their_line_budgets():
  over = {path: len((ROOT / path).read_text().splitlines()) for path in MAX_MODULE_LINES}
  over = {path: n for path, n in over.items() if n >= MAX_MODULE_LINES[path]}
  assert not over, f"{over}: lines against budgets {MAX_MODULE_LINES}"
