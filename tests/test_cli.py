"""The command lines: a config, flag or input mistake ends with one line `<prog>: error: ...`
and exit code 2 (a traceback only with --traceback). (That a run's terminal carries its own
lines and no library INFO records is checked on the resumed run of
test_training.py::test_run_killed_after_a_checkpoint_resumes_with_bitwise_identical_losses.)"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
pytestmark = pytest.mark.slow  # every test here starts train.py or decode.py


def _cli(script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(ROOT / script), *args], input=stdin, env=ENV,
                        capture_output=True, text=True, timeout=300)


def _one_error_line(run: subprocess.CompletedProcess, prog: str) -> str:
  """The message of a run that failed as a user error should: exit 2, one line, no stack."""
  assert run.returncode == 2, run.stderr[-3000:]
  assert "Traceback" not in run.stderr, run.stderr[-3000:]
  errors = [line for line in run.stderr.splitlines() if line.startswith(f"{prog}: error: ")]
  assert len(errors) == 1, run.stderr[-3000:]
  return errors[0].removeprefix(f"{prog}: error: ")


@pytest.mark.parametrize(("args", "message"), [
    (["--config.train.ema_decay=1.5"], "train.ema_decay=1.5 must be in [0, 1)"),
    (["--config.optimizer.name=adamm"], "optimizer.name='adamm' is invalid"),
    (["--config.model.ctc_weight=1.5"], "ModelConfig.ctc_weight=1.5 is invalid"),
    # Switching the dataset alone: the default config's options are cmudict's.
    (["--config.data.dataset=parallel_text"],
     "dataset 'parallel_text' takes the options ['directory', 'files', 'name', "
     "'skip_bad_lines'] (data.options); it needs ['directory', 'files']"),
])
def test_train_config_mistakes_end_with_one_error_line_and_exit_code_2(tmp_path, args, message):
  message_seen = _one_error_line(_cli("train.py", f"--workdir={tmp_path / 'run'}",
                                      f"--config.data.data_dir={tmp_path / 'tfds'}", *args),
                                 "train.py")
  assert message_seen.startswith(message)


def test_switching_to_a_dataset_the_options_do_not_fit_names_a_config_to_start_from(tmp_path):
  run = _cli("train.py", f"--workdir={tmp_path / 'run'}", "--config.data.dataset=parallel_text",
             "--config.data.options.dict_path=/some/file.dict")
  message = _one_error_line(run, "train.py")
  assert "options ['dict_path'] are not among them" in message
  assert "Start from configs/translate.py" in message


def test_bad_training_file_line_is_named_in_one_line_and_traceback_flag_shows_the_stack(
    copy_dict, tmp_path):
  bad = tmp_path / "train.tsv"
  bad.write_text("abc\tA B C\nno tab here\n")
  args = ["--config", str(ROOT / "configs" / "tiny.py"), f"--workdir={tmp_path / 'run'}",
          f"--config.data.data_dir={tmp_path / 'tfds'}",
          f"--config.data.options.dict_path={copy_dict}", f"--config.data.train_tsv={bad}"]
  message = _one_error_line(_cli("train.py", *args), "train.py")
  assert message == f"{bad}:2: expected source<TAB>target, found no tab"
  with_stack = _cli("train.py", *args, "--traceback")
  assert with_stack.returncode != 0 and "Traceback" in with_stack.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--config.model.hidden_sise=3"],
     "--config.model.hidden_sise: the config has no field 'hidden_sise'; did you mean "
     "'hidden_size'?"),
    (["--config.modell.hidden_size=3"],
     "--config.modell.hidden_size: the config has no field 'modell'; did you mean 'model'?"),
    (["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    (["--config=/no/such/config.py"], "Configuration is not available"),
    (["--config.data.dataset=cmudictt"],
     "data.dataset='cmudictt': no such dataset (local: cmudict, debian_descriptions, "
     "parallel_text, speech_files, spoken_words; or a tfds catalog name, "
     "`tfds.list_builders()`); did you mean 'cmudict'"),
])
def test_flag_and_config_field_mistakes_are_one_line_exit_2_before_any_work(
    tmp_path, args, message):
  run = _cli("train.py", *args, f"--workdir={tmp_path / 'run'}",
             f"--config.data.data_dir={tmp_path / 'tfds'}")
  assert _one_error_line(run, "train.py").startswith(message)
  assert not (tmp_path / "run" / "config.json").exists()


def test_an_empty_training_file_is_named_in_one_line(tmp_path):
  (tmp_path / "train.tsv").write_text("")
  (tmp_path / "dev.tsv").write_text("a b\tA B\n")
  run = _cli("train.py", "--config", str(ROOT / "configs" / "translate.py"),
             f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={tmp_path / 'tfds'}",
             f"--config.data.options.directory={tmp_path}",
             "--config.data.options.files.train=train.tsv",
             "--config.data.options.files.validation=dev.tsv")
  assert _one_error_line(run, "train.py") == (
      f"{tmp_path / 'train.tsv'}: the train split has no examples: the file holds no "
      "source/target pair")


def test_decode_input_that_is_not_utf8_names_the_file_or_stdin_and_the_line(tiny_run, tmp_path):
  bad = tmp_path / "in.txt"
  bad.write_bytes(b"abc\n\xff\xfeab\n")
  run = _cli("decode.py", f"--workdir={tiny_run[0]}", f"--input={bad}")
  assert _one_error_line(run, "decode.py") == (
      f"{bad}:2: not valid UTF-8 (invalid start byte at byte 0)")
  run = subprocess.run([sys.executable, str(ROOT / "decode.py"), f"--workdir={tiny_run[0]}"],
                       input=b"abc\n\xff\xfeab\n", env=ENV, capture_output=True, timeout=300)
  errors = [line for line in run.stderr.decode().splitlines() if "error:" in line]
  assert run.returncode == 2 and errors == [
      "decode.py: error: <stdin>:2: not valid UTF-8 (invalid start byte at byte 0)"]
  run = _cli("decode.py", f"--workdir={tiny_run[0]}", "--beam_size=abc", stdin="abc\n")
  assert "--beam_size=abc: invalid literal for int()" in _one_error_line(run, "decode.py")


def test_decode_mistakes_end_with_one_error_line_and_exit_code_2(tiny_run, tmp_path):
  missing = _cli("decode.py", f"--workdir={tmp_path / 'nowhere'}", stdin="abc\n")
  assert "does not exist" in _one_error_line(missing, "decode.py")
  bad_step = _cli("decode.py", f"--workdir={tiny_run[0]}", "--checkpoint=7", stdin="abc\n")
  assert "no checkpoint for step 7" in _one_error_line(bad_step, "decode.py")
  (tmp_path / "ref.txt").write_text("A\nB\n")
  refs = _cli("decode.py", f"--workdir={tiny_run[0]}", f"--reference={tmp_path / 'ref.txt'}",
              stdin="abc\n")
  assert "has 2 lines but the input has 1" in _one_error_line(refs, "decode.py")
  nbest = _cli("decode.py", f"--workdir={tiny_run[0]}", "--nbest=3", "--beam_size=2",
               stdin="abc\n")
  assert "nbest=3 must not exceed beam_size=2" in _one_error_line(nbest, "decode.py")


def test_decode_fills_the_compilation_cache_and_a_warm_call_decodes_alike(tiny_run, tmp_path):
  env = {**ENV, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  runs = [subprocess.run([sys.executable, str(ROOT / "decode.py"), f"--workdir={tiny_run[0]}"],
                         input="abc\nfade\n", env=env, capture_output=True, text=True,
                         timeout=300) for _ in range(2)]
  assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
  assert runs[0].stdout == runs[1].stdout and runs[0].stdout.count("\n") == 2
  cached = sorted(p.name for p in (tmp_path / "xdg" / "s2s_jax" / "jax").iterdir())
  assert any(name.startswith("jit_search") for name in cached)
  off = subprocess.run([sys.executable, str(ROOT / "decode.py"), f"--workdir={tiny_run[0]}",
                        "--compilation_cache="], input="abc\n", env={
                            **env, "XDG_CACHE_HOME": str(tmp_path / "off")},
                       capture_output=True, text=True, timeout=300)
  assert off.returncode == 0 and not (tmp_path / "off").exists()
