"""A workdir holds one run: one train.py at a time (the lock), and its record (config.json),
which a resumed run may not contradict and a failed one may not rewrite."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from s2s_jax import run_dir
from tests.test_cli import ENV, ROOT, _one_error_line

_HOLD_LOCK = """
import sys, time
from s2s_jax import run_dir
with run_dir.lock(sys.argv[1]):
  print("locked", flush=True)
  time.sleep(600)
"""


def _holder(workdir) -> subprocess.Popen:
  """A process that takes the workdir's lock and sleeps."""
  proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(workdir)], cwd=ROOT, env=ENV,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "locked"
  return proc


@pytest.mark.slow
def test_a_held_lock_refuses_a_second_holder_naming_it_and_a_killed_holder_blocks_nothing(
    tmp_path):
  proc = _holder(tmp_path)
  try:
    with pytest.raises(run_dir.WorkdirBusy, match=f"in use by pid {proc.pid} on "):
      with run_dir.lock(str(tmp_path)):
        pass
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert (tmp_path / ".lock").exists()  # the file stays; its lock died with the process
  with run_dir.lock(str(tmp_path)):
    pass


@pytest.mark.slow
def test_train_cli_on_a_workdir_in_use_exits_2_at_once_naming_the_other_process(tmp_path):
  proc = _holder(tmp_path)
  try:
    start = time.monotonic()
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), f"--workdir={tmp_path}",
                          f"--config={ROOT / 'configs' / 'tiny.py'}"], env=ENV,
                         capture_output=True, text=True, timeout=300)
    message = _one_error_line(run, "train.py")
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert f"in use by pid {proc.pid}" in message
  assert not (tmp_path / "config.json").exists() and not (tmp_path / "checkpoints").exists()
  assert time.monotonic() - start < 120  # refused before any data work (generous on purpose)


def _config(**changes) -> str:
  config = {"seed": 0, "model": {"hidden_size": 32, "cell": "lstm"},
            "data": {"dataset": "cmudict", "num_workers": 0, "options": {"variant": "a"}},
            "train": {"num_steps": 40, "max_minutes": 0.0}, "optimizer": {"learning_rate": 1e-3}}
  for dotted, value in changes.items():
    *path, name = dotted.split(".")
    node = config
    for key in path:
      node = node[key]
    node[name] = value
  return json.dumps(config, indent=1)


def test_resuming_with_a_changed_model_data_or_seed_field_is_refused_naming_each(tmp_path):
  run_dir.save_config(str(tmp_path), _config())
  with pytest.raises(ValueError) as e:
    run_dir.check_resume(str(tmp_path), _config(**{
        "model.hidden_size": 64, "data.options.variant": "b", "seed": 1}))
  message = str(e.value)
  for field in ("model.hidden_size (saved 32, now 64)", "data.options.variant (saved 'a', now "
                "'b')", "seed (saved 0, now 1)"):
    assert field in message
  assert "\n" not in message


def test_resuming_with_more_steps_a_new_rate_or_more_workers_is_allowed(tmp_path):
  run_dir.save_config(str(tmp_path), _config())
  run_dir.check_resume(str(tmp_path), _config(**{
      "train.num_steps": 80, "train.max_minutes": 5.0, "optimizer.learning_rate": 1e-4,
      "data.num_workers": 2}))
  run_dir.check_resume(str(tmp_path / "fresh"), _config(**{"model.hidden_size": 64}))


def test_a_field_only_one_config_has_counts_as_changed(tmp_path):
  run_dir.save_config(str(tmp_path), _config())
  new = json.loads(_config())
  new["model"]["ctc_weight"] = 0.3
  with pytest.raises(ValueError, match=r"model.ctc_weight \(saved 'absent', now 0.3\)"):
    run_dir.check_resume(str(tmp_path), json.dumps(new))


def test_an_unreadable_record_is_named(tmp_path):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match="config.json is unreadable"):
    run_dir.check_resume(str(tmp_path), _config())


def test_a_failed_record_write_keeps_the_old_record_and_leaves_no_temporary(
    tmp_path, monkeypatch):
  run_dir.save_config(str(tmp_path), _config())
  before = (tmp_path / "config.json").read_bytes()
  def fail(src, dst):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(os, "replace", fail)
  with pytest.raises(OSError, match="No space left"):
    run_dir.save_config(str(tmp_path), _config(**{"train.num_steps": 80}))
  assert (tmp_path / "config.json").read_bytes() == before
  assert os.listdir(tmp_path) == ["config.json"]


def test_a_refused_rerun_of_a_finished_run_leaves_its_record_and_decoding_intact(
    tiny_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(tiny_run[0], workdir)
  before = (workdir / "config.json").read_bytes()
  saved = json.loads(before)
  run = subprocess.run(
      [sys.executable, str(ROOT / "train.py"), f"--workdir={workdir}",
       f"--config={ROOT / 'configs' / 'tiny.py'}", "--config.model.dropout=0.3",
       f"--config.data.options.dict_path={saved['data']['options']['dict_path']}",
       f"--config.data.data_dir={saved['data']['data_dir']}"],
      env=ENV, capture_output=True, text=True, timeout=300)
  message = _one_error_line(run, "train.py")
  assert "model.dropout (saved 0.0, now 0.3)" in message and "train." not in message
  assert (workdir / "config.json").read_bytes() == before
  decoded = subprocess.run([sys.executable, str(ROOT / "decode.py"), f"--workdir={workdir}"],
                           input="abc\n", env=ENV, capture_output=True, text=True, timeout=300)
  assert decoded.returncode == 0 and decoded.stdout.strip(), decoded.stderr[-2000:]
