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
