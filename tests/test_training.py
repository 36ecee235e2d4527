"""Training: the tiny config learns; jit, pmap and one device agree; kill-and-resume is exact;
checkpoints fall back past a corrupt step; a non-finite loss stops the run; bad configs are named.
"""

import functools
import importlib
import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl import flags
from ml_collections import config_flags

from configs import tiny
from s2s_jax import ModelConfig, Seq2Seq, checkpoint, metrics_log, optim, parallel, training
from s2s_jax import data as data_lib
from s2s_jax import inputs as inputs_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _metrics(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_tiny_config_learns_the_copy_task_and_writes_its_outputs(tiny_run):
  workdir, result = tiny_run
  rows = _metrics(workdir)
  losses = [r["train_loss"] for r in rows if "train_loss" in r]
  assert len(losses) == 40
  norms = [r["grad_norm"] for r in rows if "train_loss" in r]
  assert len(norms) == 40 and all(math.isfinite(g) and g > 0 for g in norms)
  assert np.mean(losses[-5:]) < 0.5 * losses[0]
  assert [r["step"] for r in rows if "eval_wer" in r] == [10, 20, 30, 40]
  assert 0 <= result["test_wer"] <= 1 and result["test_decoded"] > 0
  for name in ("config.json", "learning_curves.png", "tokenizers/tokenizers.json"):
    assert (workdir / name).exists(), name
  assert sorted(os.listdir(workdir / "checkpoints" / "last")) == ["30", "40"]


def _small_state(rows: int = 16, ema: bool = False):
  cfg = ModelConfig(src_vocab_size=20, tgt_vocab_size=24, embed_size=8, hidden_size=16,
                    attention="luong", input_feeding=True)
  rng = np.random.default_rng(0)
  lengths = rng.integers(2, 7, rows)
  mask = np.arange(7)[None, :] < lengths[:, None]
  batch = {"src": np.where(mask, rng.integers(4, 20, (rows, 7)), 0).astype(np.int32),
           "tgt_in": np.where(mask, rng.integers(4, 24, (rows, 7)), 0).astype(np.int32),
           "tgt_out": np.where(mask, rng.integers(4, 24, (rows, 7)), 0).astype(np.int32)}
  opt = {"name": "adam", "clip_norm": 1.0, "accumulate_steps": 1}
  state = training.create_train_state(jax.random.PRNGKey(0), Seq2Seq(cfg),
                                      optim.make_optimizer(opt),
                                      optax.constant_schedule(1e-2), ema=ema)
  return state, batch


@pytest.mark.slow
def test_one_device_jit_mesh_and_pmap_compute_the_same_parameters_and_moving_average():
  assert jax.device_count() == 8
  step = functools.partial(training.train_step, label_smoothing=0.1, ema_decay=0.5)
  rng = jax.random.PRNGKey(3)
  results = {}
  for name, devices in (("one device", jax.devices()[:1]), ("jit, 8 devices", jax.devices())):
    state, batch = _small_state(ema=True)
    mesh = parallel.make_mesh(devices)
    state = jax.device_put(state, parallel.state_sharding(mesh, state))
    fn = parallel.jit_train_step(step, mesh, state)
    for _ in range(3):
      state, _ = fn(state, parallel.global_batch(mesh, batch), rng)
    results[name] = jax.device_get((state.params, state.ema_params))
  state, batch = _small_state(ema=True)
  fn = parallel.pmap_train_step(step)
  state = parallel.replicate(state)
  for _ in range(3):
    state, _ = fn(state, parallel.split_for_pmap(batch), rng)
  results["pmap, 8 devices"] = jax.device_get(
      parallel.unreplicate((state.params, state.ema_params)))
  reference = results.pop("one device")
  # Sharding changes the order of the batch sums, so gradients differ by float rounding; Adam's
  # m / (sqrt(v) + 1e-8) turns that into up to ~5e-7 on parameters whose gradient is near zero
  # (a sum taken wrong would move them by ~lr = 1e-2).
  for name, params in results.items():
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=2e-6, err_msg=name),
                 params, reference)


@pytest.mark.slow
def test_moving_average_follows_the_hand_computed_recurrence_and_leaves_training_alone():
  decay, steps = 0.2, 4  # the warmup (1 + n) / (10 + n) is below 0.2 for n = 0, 1; above after
  plain, batch = _small_state()
  state, _ = _small_state(ema=True)
  step = jax.jit(functools.partial(training.train_step, ema_decay=decay))
  plain_step = jax.jit(training.train_step)
  expected = jax.device_get(state.params)
  for n in range(steps):
    state, _ = step(state, batch, jax.random.PRNGKey(0))
    plain, _ = plain_step(plain, batch, jax.random.PRNGKey(0))
    d = min(decay, (1 + n) / (10 + n))
    expected = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * np.asarray(p), expected,
                            jax.device_get(state.params))
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7),
               jax.device_get(state.ema_params), expected)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
               jax.device_get(plain.params))  # the average never feeds back into training
  assert not np.allclose(jax.tree.leaves(state.ema_params)[0], jax.tree.leaves(state.params)[0])


@pytest.mark.slow
def test_moving_average_moves_only_on_steps_that_update_the_parameters():
  state, batch = _small_state(ema=True)
  opt = {"name": "adam", "clip_norm": 1.0, "accumulate_steps": 2}
  state = state.replace(tx=optim.make_optimizer(opt),
                        opt_state=optim.make_optimizer(opt).init(state.params))
  step = jax.jit(functools.partial(training.train_step, accumulate_steps=2, ema_decay=0.9))
  start = jax.device_get(state.ema_params)
  state, _ = step(state, batch, jax.random.PRNGKey(0))  # accumulates: nothing applied yet
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.ema_params), start)
  state, _ = step(state, batch, jax.random.PRNGKey(0))  # the first update: d = 1 / 10
  expected = jax.tree.map(lambda e, p: 0.1 * e + 0.9 * np.asarray(p), start,
                          jax.device_get(state.params))
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7),
               jax.device_get(state.ema_params), expected)


def test_evaluation_and_loading_use_the_moving_average_when_the_run_keeps_one(tiny_run):
  import orbax.checkpoint as ocp

  import s2s_jax
  workdir, _ = tiny_run
  assert tiny.get_config().train.ema_decay > 0
  raw = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / "last" / "40" / "state")
  loaded = s2s_jax.load(str(workdir), checkpoint="last")
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded.params), raw["ema_params"])
  assert not np.array_equal(jax.tree.leaves(raw["ema_params"])[0],
                            jax.tree.leaves(raw["params"])[0])
  state = types.SimpleNamespace(params="raw", ema_params="average")
  assert training.eval_params(state) == "average"
  assert training.eval_params(types.SimpleNamespace(params="raw", ema_params=None)) == "raw"


@pytest.mark.slow
def test_train_tsv_replaces_the_train_split_and_a_bad_line_is_named(copy_dict, tmp_path):
  from s2s_jax.data import InputError
  config = tiny.get_config()
  tsv = tmp_path / "distilled.tsv"
  tsv.write_text("abc\tA B C\nFade\tF A D E\n")
  cfg = {**config.data, "seed": 0, "train_tsv": str(tsv), "data_dir": str(tmp_path / "tfds"),
         "options": {"dict_path": copy_dict}}
  inputs = inputs_lib.prepare_inputs(cfg, str(tmp_path / "run"), batch_multiple=1)
  assert len(inputs.train.data) == 2  # the file's pairs, not the dataset's train split
  assert inputs.source_tokenizer.tokens == tuple("abcdef")  # lowercased, most frequent first
  assert len(inputs.evals["validation"][0].data) > 2  # evaluation still reads the dataset
  tsv.write_text("abc\tA B C\nfade\n")
  with pytest.raises(InputError, match=r"distilled.tsv:2: expected source<TAB>target"):
    inputs_lib.prepare_inputs(cfg, str(tmp_path / "run2"), batch_multiple=1)


def _train_cmd(workdir, data_dir, copy_dict, num_steps):
  return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.py"),
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          f"--config.data.options.dict_path={copy_dict}", f"--config.train.num_steps={num_steps}"]


def test_run_killed_after_a_checkpoint_resumes_with_bitwise_identical_losses(copy_dict, tiny_run,
                                                                             tmp_path):
  # The uninterrupted reference is the session's tiny run: same config, 40 steps, 8 devices.
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # conftest's XLA_FLAGS: 8 devices, as tiny_run
  cmd = _train_cmd(tmp_path / "killed", tmp_path / "tfds", copy_dict, num_steps=40)
  log = tmp_path / "killed.log"
  with open(log, "w") as stderr:
    killed = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
  first = tmp_path / "killed" / "checkpoints" / "last" / "20"
  deadline = time.time() + 300
  while not first.exists() and killed.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  killed.send_signal(signal.SIGKILL)
  # It was still running: the resume below is real.
  assert killed.wait() == -signal.SIGKILL, log.read_text()[-3000:]
  resumed = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
  assert "resuming from step" in resumed.stderr
  # The terminal carries the run's own lines, not the libraries' INFO records (absl's prefix,
  # e.g. "I1201 10:02:17.262911 1398... file.py:123]").
  assert not re.search(r"^I\d{4} \d\d:\d\d", resumed.stderr, re.M), resumed.stderr[-3000:]
  assert "checkpoints in" in resumed.stderr and "step 30, validation: loss" in resumed.stderr
  assert "train: " in resumed.stderr  # the pipeline's data summary
  whole = [(r["step"], r["train_loss"]) for r in _metrics(tiny_run[0]) if "train_loss" in r]
  again = [(r["step"], r["train_loss"]) for r in _metrics(tmp_path / "killed") if "train_loss" in r]
  assert again == whole and len(whole) == 40
  # ... and so are the parameters and their moving average (what evaluation and decoding use).
  from s2s_jax import load
  jax.tree.map(np.testing.assert_array_equal, load(str(tiny_run[0]), "last").params,
               load(str(tmp_path / "killed"), "last").params)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  ckpts = checkpoint.Checkpoints(str(tmp_path), keep=3)
  state = {"w": jnp.arange(4.0)}
  for step in (1, 2):
    ckpts.save(step, {"w": state["w"] * step}, {"data": {"next_index": step}})
  ckpts.wait()
  for path in (tmp_path / "last" / "2" / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")
  (tmp_path / "last" / "3.orbax-checkpoint-tmp-123").mkdir()  # a save killed halfway
  reopened = checkpoint.Checkpoints(str(tmp_path), keep=3)
  step, restored_state, loop = reopened.restore_latest(checkpoint.abstract(state))
  assert step == 1 and loop == {"data": {"next_index": 1}}
  np.testing.assert_array_equal(restored_state["w"], np.arange(4.0))
  assert "checkpoint step 2" in caplog.text and "unreadable" in caplog.text


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(copy_dict, tmp_path):
  # On the pmap path, which this also runs end to end (train, evaluate, checkpoint, resume).
  config = tiny.get_config()
  config.data.options.dict_path = copy_dict
  config.data.data_dir = str(tmp_path / "tfds")
  config.train.parallel = "pmap"
  config.train.num_steps = 10
  first = training.train_and_evaluate(config, str(tmp_path / "run"))
  assert 0 <= first["test_wer"] <= 1 and first["test_decoded"] > 0
  config.train.num_steps = 30
  config.optimizer.learning_rate = float("nan")
  with pytest.raises(FloatingPointError, match=r"at step 12.*last good checkpoint \(step 10\)"):
    training.train_and_evaluate(config, str(tmp_path / "run"))
  ckpts = checkpoint.Checkpoints(str(tmp_path / "run" / "checkpoints"))
  assert ckpts.last.all_steps() == [10]


def _parse_config_flags(monkeypatch, *args: str):
  argv = ["train.py", *args]
  monkeypatch.setattr(sys, "argv", argv)  # config_flags finds override flags in sys.argv
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "tiny.py"), flag_values=values)
  values(argv)
  return values.config


@pytest.mark.slow
def test_config_override_of_a_missing_field_names_it_on_the_command_line(tmp_path):
  run = subprocess.run([sys.executable, str(ROOT / "train.py"), f"--workdir={tmp_path}",
                        "--config.model.hidden_sise=3"], capture_output=True, text=True)
  assert run.returncode == 2 and "Traceback" not in run.stderr
  assert run.stderr.strip() == ("train.py: error: --config.model.hidden_sise: the config has no "
                                "field 'hidden_sise'; did you mean 'hidden_size'?")
  assert not os.listdir(tmp_path)  # failed before doing anything


def test_config_overrides_apply(monkeypatch):
  config = _parse_config_flags(monkeypatch, "--config.model.hidden_size=48",
                               "--config.train.parallel=pmap")
  assert (config.model.hidden_size, config.train.parallel) == (48, "pmap")


@pytest.mark.parametrize(("section", "field", "value", "message"), [
    ("train", "parallel", "pmapp", "train.parallel='pmapp' is invalid"),
    ("train", "eval_metric", "bleuu", "train.eval_metric='bleuu' is invalid"),
    ("train", "log_every", 0, "train.log_every=0 must be >= 1"),
    ("train", "ema_decay", 1.0, r"train.ema_decay=1.0 must be in \[0, 1\)"),
])
def test_bad_train_config_values_are_named(section, field, value, message):
  config = tiny.get_config()
  config[section][field] = value
  with pytest.raises(ValueError, match=message):
    training.train_and_evaluate(config, "/nonexistent/never/created")


def test_bad_optimizer_and_schedule_names_are_named():
  with pytest.raises(ValueError, match="optimizer.name='adamm' is invalid"):
    optim.make_optimizer({"name": "adamm", "clip_norm": 0, "accumulate_steps": 1})
  with pytest.raises(ValueError, match="optimizer.schedule='cosine' is invalid"):
    optim.make_schedule({"learning_rate": 1.0, "warmup_steps": 1, "schedule": "cosine"}, 10)


@pytest.mark.parametrize(("name", "reference"), [
    ("adamw", lambda lr: optax.adamw(lr, weight_decay=0.1)),
    ("sgd", lambda lr: optax.sgd(lr, momentum=0.9)),
    ("adam", lambda lr: optax.adam(lr)),
])
def test_unit_rate_optimizer_times_the_schedule_equals_optax_with_that_schedule(name, reference):
  cfg = {"name": name, "weight_decay": 0.1, "momentum": 0.9, "clip_norm": 0,
         "accumulate_steps": 1, "learning_rate": 0.05, "warmup_steps": 3,
         "schedule": "warmup_rsqrt"}
  schedule = optim.make_schedule(cfg, 10)
  ours, theirs = optim.make_optimizer(cfg), reference(schedule)
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  p1, s1, p2, s2 = params, ours.init(params), params, theirs.init(params)
  def grads(p, step):
    return {"w": p["w"] ** 3 - step}

  for step in range(6):
    updates, s1 = ours.update(grads(p1, step), s1, p1)
    p1 = optax.apply_updates(p1, {"w": schedule(step) * updates["w"]})
    updates, s2 = theirs.update(grads(p2, step), s2, p2)
    p2 = optax.apply_updates(p2, updates)
  np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-6)


def test_warmup_rsqrt_rises_linearly_then_decays_as_inverse_sqrt():
  schedule = optim.make_schedule(
      {"learning_rate": 1.0, "warmup_steps": 4, "schedule": "warmup_rsqrt"}, 100)
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 1, 3, 15, 63)],
                             [0.25, 0.5, 1.0, 0.5, 0.25], rtol=1e-6)


@pytest.mark.slow
def test_reported_grad_norm_is_the_norm_of_the_mean_token_loss_gradient_before_clipping():
  state, batch = _small_state()
  opt = optim.make_optimizer({"name": "adam", "clip_norm": 0.05, "accumulate_steps": 1})
  state = state.replace(tx=opt, opt_state=opt.init(state.params))  # clipping is active

  def mean_nll(params):  # written out here, not through s2s_jax.losses
    logits_BTV = state.apply_fn({"params": params}, batch["src"], batch["tgt_in"])
    logp_BTV = jax.nn.log_softmax(logits_BTV, axis=-1)
    nll_BT = -jnp.take_along_axis(logp_BTV, batch["tgt_out"][..., None], axis=-1)[..., 0]
    mask_BT = batch["tgt_out"] > 0
    return jnp.sum(jnp.where(mask_BT, nll_BT, 0.0)) / jnp.sum(mask_BT)

  grads = jax.grad(mean_nll)(state.params)
  expected = np.sqrt(sum(float(np.sum(np.square(g))) for g in jax.tree.leaves(grads)))
  _, metrics = jax.jit(training.train_step)(state, batch, jax.random.PRNGKey(0))
  assert expected > 2 * 0.05  # the reported norm must be the one before clipping
  np.testing.assert_allclose(float(metrics["grad_norm"]), expected, rtol=1e-5)


@pytest.mark.slow
def test_accumulating_two_identical_batches_equals_one_step_on_that_batch():
  results = []
  for accumulate in (1, 2):
    state, batch = _small_state()
    opt = {"name": "adam", "clip_norm": 1.0, "accumulate_steps": accumulate}
    state = state.replace(tx=optim.make_optimizer(opt),
                          opt_state=optim.make_optimizer(opt).init(state.params))
    step = jax.jit(functools.partial(training.train_step, accumulate_steps=accumulate))
    for _ in range(accumulate):
      state, _ = step(state, batch, jax.random.PRNGKey(0))
    results.append(state.params)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7), *results)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.py")
                                         if p.stem != "__init__"))
def test_every_config_file_builds_its_model_tokenizers_batching_and_optimizer(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  shared = config.data.shared_vocab  # one vocabulary: equal sizes (copy attention checks it)
  ModelConfig.from_dict({**config.model, "src_vocab_size": 50,
                         "tgt_vocab_size": 50 if shared else 60})
  for side in ("source_tokenizer", "target_tokenizer"):
    if config.data[side] is None:  # a speech config: the source is audio
      assert side == "source_tokenizer" and config.model.source == "audio"
      continue
    data_lib.TokenizerSpec.from_dict(config.data[side])
  data_lib.BatchingConfig(max_tokens=config.data.max_tokens,
                                   bucket_lengths=tuple(config.data.bucket_lengths))
  optim.make_optimizer(config.optimizer)
  assert float(optim.make_schedule(config.optimizer, config.train.num_steps)(10)) > 0
  training._check_config(config)
  assert config.train.eval_metric in training.LOWER_IS_BETTER


def test_resumed_metrics_log_drops_steps_past_the_checkpoint_and_a_line_cut_by_a_kill(tmp_path):
  lines = [json.dumps({"step": s, "train_loss": 1.0 / s}) + "\n" for s in (1, 2, 3)]
  (tmp_path / "metrics.jsonl").write_text("".join(lines) + '{"step": 4, "train_lo')
  log = metrics_log.MetricsLog(str(tmp_path), resume_step=2)
  log.write(3, {"train_loss": 0.5})
  log.close()
  assert [r["step"] for r in _metrics(tmp_path)] == [1, 2, 3]
  assert _metrics(tmp_path)[-1]["train_loss"] == 0.5


# Recorded from the step as it was written (jax 0.10.2, CPU, XLA_FLAGS of conftest). If this
# test fails, the step's arithmetic changed: update GOLDEN only when that change is intended
# (a new loss, initializer or optimizer), and say so in the commit message.
GOLDEN = {"loss": 3.1733574144767993, "tokens": 66.0, "grad_norm": 0.21027852594852448,
          "param_sum": 61.849403381347656}


@pytest.mark.slow
def test_golden_one_step_loss_tokens_grad_norm_and_parameters():
  state, batch = _small_state()
  step = jax.jit(functools.partial(training.train_step, label_smoothing=0.1))
  state, m = step(state, batch, jax.random.PRNGKey(7))
  got = {"loss": float(m["loss_sum"]) / float(m["tokens"]), "tokens": float(m["tokens"]),
         "grad_norm": float(m["grad_norm"]),
         "param_sum": float(sum(jnp.sum(p) for p in jax.tree.leaves(state.params)))}
  for key, want in GOLDEN.items():
    assert got[key] == pytest.approx(want, rel=1e-5, abs=1e-5), (
        f"{key}: {got[key]!r} != recorded {want!r}. The train step's arithmetic changed; update "
        "GOLDEN in tests/test_training.py only if that change is intended.")


def test_resuming_with_a_state_no_checkpoint_fits_is_refused_not_restarted(tmp_path):
  # E.g. a run resumed with another model config: starting at step 0 would overwrite its work.
  ckpts = checkpoint.Checkpoints(str(tmp_path), keep=2)
  ckpts.save(5, {"w": jnp.arange(4.0)}, {"data": None})
  ckpts.wait()
  other = {"w": jnp.arange(4.0), "v": jnp.zeros((3,))}
  with pytest.raises(ValueError, match=r"none of the checkpoints .* can be restored.*step 5"):
    checkpoint.Checkpoints(str(tmp_path), keep=2).restore_latest(checkpoint.abstract(other))
