"""Training: the train state, the pure train step, and the loop that runs it.

Shape legend: B batch rows, S source length, T target length, V target vocabulary.

`train_step(state, batch, rng)` is a module-level pure function: dropout randomness is
`fold_in(rng, state.step)`, so a resumed run draws exactly what an uninterrupted one would. The
loss is normalized by the global number of target tokens (under pmap, sums are `psum`med before
dividing), so 1 device, a jit mesh and pmap compute the same update for the same global batch.
The learning rate is `schedule(update) * state.lr_scale`; the loop lowers `lr_scale` when the
validation metric stalls ("decay on plateau"). With `train.ema_decay > 0` the state also carries
an exponential moving average of the parameters (`ema_params`, updated inside the step and saved
in checkpoints); evaluation, the best-checkpoint choice, the test score and decoding then use it.

`train_and_evaluate` reads top to bottom: inputs (`s2s_jax.inputs`), model, optimizer
(`s2s_jax.optim`), state, resume (`s2s_jax.checkpoint`), then `_loop`, which steps, logs
(`s2s_jax.metrics_log`), evaluates (`s2s_jax.evaluation`) and checkpoints. Devices are
`parallel.DataParallel`'s business: this module has no jit / pmap branches.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from s2s_jax import checkpoint, coverage, ctc, losses, optim, parallel, plots, run_dir
from s2s_jax.evaluation import Evaluator
from s2s_jax.inputs import prepare_inputs
from s2s_jax.metrics_log import MetricsLog
from s2s_jax.model import ModelConfig, Seq2Seq, batch_source, source_positions
from s2s_jax.special_ids import PAD_ID

log = logging.getLogger(__name__)

LOWER_IS_BETTER = {"wer": True, "per": True, "cer": True, "loss": True, "bleu": False,
                   "chrf": False, "accuracy": False, "rouge1": False, "rouge2": False,
                   "rougeL": False}


class TrainState(flax.struct.PyTreeNode):
  """Everything a step changes (saved in checkpoints) plus the static functions it calls."""

  step: jax.Array  # batches seen
  params: Any
  opt_state: Any
  lr_scale: jax.Array  # multiplies the schedule; lowered on validation plateaus
  ema_params: Any  # moving average of params (train.ema_decay > 0), or None
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  schedule: Callable = flax.struct.field(pytree_node=False)


def create_train_state(rng: jax.Array, model: Seq2Seq, tx: optax.GradientTransformation,
                       schedule: optax.Schedule, *, ema: bool = False) -> TrainState:
  """Initial parameters and optimizer state; with `ema`, a moving average starting at them."""
  # Eager on purpose: with jax 0.10.2 on CPU, a jitted init (orthogonal init's QR inside) left
  # a later while-loop decode of the reference workload hanging in the same process. Creating
  # the parameters alone skips the eager forward pass an init with example inputs would run.
  params = model.init(rng, method=Seq2Seq.create_params)["params"]
  # A copy, not the same buffers: the jitted step donates the state.
  ema_params = jax.tree.map(jnp.copy, params) if ema else None
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    lr_scale=jnp.ones((), jnp.float32), ema_params=ema_params,
                    apply_fn=model.apply, tx=tx, schedule=schedule)


def ema_update(ema: Any, params: Any, decay: float, num_updates: jax.Array) -> Any:
  """`d * ema + (1 - d) * params` with `d = min(decay, (1 + n) / (10 + n))` after n earlier
  updates: the warmup of tf.train.ExponentialMovingAverage, so that early evaluations do not
  average in the random initialization with weight `decay ** n`."""
  d = jnp.minimum(decay, (1.0 + num_updates) / (10.0 + num_updates))
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, params)


def eval_params(state: TrainState) -> Any:
  """The parameters evaluation and decoding use: the moving average when there is one."""
  return state.params if state.ema_params is None else state.ema_params


# ----------------------------------------------------------------------------- steps


def train_step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, *,
               label_smoothing: float = 0.0, accumulate_steps: int = 1, ema_decay: float = 0.0,
               ctc_weight: float = 0.0, coverage_weight: float = 0.0,
               axis_name: str | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on `batch` (src [B, S] or audio [B, N] + audio_len [B], tgt_in / tgt_out
  [B, T]); pure.

  `ema_decay` is used when the state carries `ema_params`; the average moves only on steps
  that update the parameters (every `accumulate_steps`-th). `ctc_weight` > 0 (the model's)
  adds its CTC term: `_joint_loss`; `coverage_weight` > 0 adds See et al.'s coverage loss
  (`s2s_jax.coverage.loss`) of a model with coverage.
  """
  dropout_rng = jax.random.fold_in(rng, state.step)
  if axis_name is not None:  # pmap: each device drops out its own rows differently
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))

  def loss_fn(params):
    variables, rngs = {"params": params}, {"dropout": dropout_rng}
    if ctc_weight:
      return _joint_loss(state.apply_fn(variables, batch_source(batch), batch["tgt_in"],
                                        deterministic=False, rngs=rngs, method=Seq2Seq.with_ctc),
                         batch["tgt_out"], label_smoothing, ctc_weight)
    out = state.apply_fn(variables, batch_source(batch), batch["tgt_in"], deterministic=False,
                         rngs=rngs, return_attention=bool(coverage_weight))
    logits_BTV, weights_BTS = out if coverage_weight else (out, None)
    loss_sum, tokens = losses.cross_entropy(logits_BTV, batch["tgt_out"],
                                            label_smoothing=label_smoothing)
    if not coverage_weight:
      return loss_sum, (tokens, {})
    terms = {"ce_sum": loss_sum,
             "coverage_sum": jnp.sum(coverage.loss(weights_BTS, batch["tgt_out"]))}
    return loss_sum + coverage_weight * terms["coverage_sum"], (tokens, terms)

  (loss_sum, (tokens, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  if axis_name is not None:
    loss_sum, tokens, terms, grads = jax.lax.psum((loss_sum, tokens, terms, grads), axis_name)
  grads = jax.tree.map(lambda g: g / jnp.maximum(tokens, 1), grads)
  lr = state.schedule(state.step // accumulate_steps) * state.lr_scale
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, jax.tree.map(lambda u: lr * u, updates))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  if state.ema_params is not None:
    ema = ema_update(state.ema_params, params, ema_decay, state.step // accumulate_steps)
    if accumulate_steps > 1:  # between updates the parameters stand still: so does the average
      applied = (state.step + 1) % accumulate_steps == 0
      ema = jax.tree.map(lambda new, old: jnp.where(applied, new, old), ema, state.ema_params)
    new_state = new_state.replace(ema_params=ema)
  return new_state, {"loss_sum": loss_sum, "tokens": tokens, "learning_rate": lr,
                     "grad_norm": optax.tree.norm(grads), **terms}


def _joint_loss(outputs: Any, targets_BT: jax.Array, label_smoothing: float, ctc_weight: float
                ) -> tuple[jax.Array, tuple[jax.Array, dict[str, jax.Array]]]:
  """`ctc_weight * CTC + (1 - ctc_weight) * CE`, both summed over the batch and divided later
  by its target tokens (EOS included), so each is a per-token loss as CE alone is. Returns
  (that sum, (tokens, the terms' sums and the CTC-skipped count for the logs))."""
  logits_BTV, (ctc_logits_BFV, mask_BF) = outputs
  tokens = jnp.sum(targets_BT != PAD_ID).astype(jnp.float32)
  ctc_loss = ctc.loss(ctc_logits_BFV, mask_BF, targets_BT)
  terms = {"ctc_sum": ctc_loss.nll_sum, "ctc_skipped": ctc_loss.skipped,
           "ctc_examples": jnp.sum(targets_BT[:, 0] != PAD_ID).astype(jnp.float32)}
  total = ctc_weight * ctc_loss.nll_sum
  if logits_BTV is not None:  # None: a CTC-only model (ctc_weight 1)
    terms["ce_sum"], _ = losses.cross_entropy(logits_BTV, targets_BT,
                                              label_smoothing=label_smoothing)
    total = total + (1.0 - ctc_weight) * terms["ce_sum"]
  return total, (tokens, terms)


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class LoopState:
  """What the loop carries besides the train state; saved as JSON beside it in checkpoints."""

  data: Any = None  # the input iterator's state (where the data order resumes)
  best: float | None = None  # best validation value so far
  bad_evals: int = 0  # evaluations since the best one (early stopping)
  plateau_evals: int = 0  # evaluations since the best one or the last rate decay
  train_seconds: float = 0.0  # time in steps, evaluations excluded
  ctc_skipped: int = 0  # training examples without a CTC term (labels longer than the frames)
  ctc_examples: int = 0  # training examples seen by a model with a CTC head

  def track(self, value: float, config) -> tuple[bool, bool, bool]:
    """Updates the counters with a validation value; returns (is best, decay the learning
    rate now, stop early)."""
    lower = LOWER_IS_BETTER[config.train.eval_metric]
    if self.best is None or (value < self.best if lower else value > self.best):
      self.best, self.bad_evals, self.plateau_evals = value, 0, 0
      return True, False, False
    self.bad_evals += 1
    self.plateau_evals += 1
    decay = (config.optimizer.plateau_factor < 1
             and self.plateau_evals >= config.optimizer.plateau_patience)
    if decay:
      self.plateau_evals = 0
    patience = config.train.early_stopping_patience
    return False, decay, bool(patience and self.bad_evals >= patience)


def _check_config(config) -> None:
  if config.train.eval_metric not in LOWER_IS_BETTER:
    raise ValueError(f"train.eval_metric={config.train.eval_metric!r} is invalid; allowed "
                     f"values: {tuple(LOWER_IS_BETTER)}")
  for name in ("log_every", "eval_every", "checkpoint_every", "num_steps"):
    if config.train[name] < 1:
      raise ValueError(f"train.{name}={config.train[name]} must be >= 1")
  if not 0.0 <= config.train.ema_decay < 1.0:
    raise ValueError(f"train.ema_decay={config.train.ema_decay} must be in [0, 1) (0 = no moving "
                     "average of the parameters)")
  optim.make_schedule(config.optimizer, 1)  # names a bad optimizer before the data is read
  optim.make_optimizer(config.optimizer)
  # The model's fields too: stand-in vocabulary sizes (the data's come later) decide nothing
  # but the vocabulary checks, which the real sizes repeat.
  ModelConfig.for_vocabularies(config.model, _STAND_IN_VOCABULARY, _STAND_IN_VOCABULARY)
  weight = config.train.get("coverage_loss_weight", 0.0)
  if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
    raise ValueError(f"train.coverage_loss_weight={weight!r} must be a number >= 0 (0 = none)")
  if weight and (not config.model.get("coverage") or config.model.get("ctc_weight")):
    raise ValueError(f"train.coverage_loss_weight={weight} needs model.coverage=True and "
                     "model.ctc_weight=0 (the coverage loss reads the attention of a model "
                     "with coverage; joint CTC training does not return it)")
  if config.model.get("copy_attention") and not config.data.get("shared_vocab"):
    raise ValueError("model.copy_attention=True copies source tokens into the output: it needs "
                     "one vocabulary for both sides; set data.shared_vocab=True")


_STAND_IN_VOCABULARY = 64


def _check_source(model: Mapping[str, Any], inputs, dataset: str) -> None:
  """The model (its config section) reads what the dataset holds: token ids, or audio at the
  dataset's sample rate."""
  speech = inputs.sample_rate is not None
  source = model.get("source", "tokens")
  if speech != (source == "audio"):
    raise ValueError(
        f"model.source={source!r} but dataset {dataset!r} holds "
        f"{'audio' if speech else 'text'}; set model.source={('audio' if speech else 'tokens')!r}"
        + (" (configs/asr_words.py is a speech config)" if speech else ""))
  rate = model.get("sample_rate", ModelConfig.__dataclass_fields__["sample_rate"].default)
  if speech and rate != inputs.sample_rate:
    raise ValueError(f"model.sample_rate={rate} but dataset {dataset!r} is "
                     f"sampled at {inputs.sample_rate} Hz; set model.sample_rate="
                     f"{inputs.sample_rate}")


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains (resuming from `workdir` when it holds checkpoints), evaluates, and returns the final
  metrics. Writes config.json, tokenizers/, checkpoints/, metrics.jsonl, tensorboard/ and
  learning_curves.png into `workdir`, holding its lock (`run_dir.lock`) throughout.

  Raises:
    ValueError: a bad config field; or `workdir` holds a run whose config differs in a field a
      resumed run must keep (`run_dir.must_keep`).
    run_dir.WorkdirBusy: another train.py holds the workdir.
  """
  _check_config(config)
  if config.train.distributed:
    parallel.initialize_distributed(config.train)
  record = config.to_json_best_effort(indent=1)
  if jax.process_index() != 0:
    return _train(config, workdir, record)
  with run_dir.lock(workdir):  # one train.py per workdir
    run_dir.check_resume(workdir, record)
    return _train(config, workdir, record)


def _train(config, workdir: str, record: str) -> dict[str, Any]:
  os.makedirs(workdir, exist_ok=True)
  par = parallel.DataParallel(config.train.parallel)
  inputs = prepare_inputs({**config.data, "seed": config.seed}, workdir, par.batch_multiple,
                          copy_slots=config.model.get("copy_oov_slots", 0))
  _check_source(config.model, inputs, config.data.dataset)
  model_config = ModelConfig.for_vocabularies(config.model, inputs.source_vocab_size,
                                              inputs.target_tokenizer.vocab_size)
  if jax.process_index() == 0:  # the run's record, once the config has passed every check
    run_dir.save_config(workdir, record)
  opt = config.optimizer
  schedule = optim.make_schedule(opt, config.train.num_steps // opt.accumulate_steps)
  rng_init, rng_train = jax.random.split(jax.random.PRNGKey(config.seed))
  state = par.place(create_train_state(rng_init, Seq2Seq(model_config),
                                       optim.make_optimizer(opt), schedule,
                                       ema=config.train.ema_decay > 0))
  ckpts = checkpoint.Checkpoints(os.path.join(workdir, "checkpoints"),
                                 keep=config.train.keep_checkpoints)
  start, loop = 0, LoopState()
  restored = ckpts.restore_latest(checkpoint.abstract(state))
  if restored is not None:
    start, state, loop = restored[0], restored[1], LoopState(**restored[2])
    log.info("resuming from step %d", start)
  step_fn, state = par.compile_step(functools.partial(
      train_step, label_smoothing=config.train.label_smoothing,
      accumulate_steps=opt.accumulate_steps, ema_decay=config.train.ema_decay,
      ctc_weight=model_config.ctc_weight,
      coverage_weight=config.train.get("coverage_loss_weight", 0.0)), state)
  iterator = inputs.train.iterator(num_workers=config.data.num_workers)
  if loop.data is not None:
    iterator.set_state(loop.data)
  metrics_log = MetricsLog(workdir, start)
  log.info("training steps %d to %d; checkpoints in %s", start, config.train.num_steps,
           ckpts.directory)
  evaluator = Evaluator(config, model_config, inputs, par)
  result = _loop(config, step_fn, state, iterator, rng_train, ckpts, loop, metrics_log,
                 evaluator, start)
  ckpts.wait()
  if jax.process_index() == 0:
    plots.learning_curves(metrics_log.path, os.path.join(workdir, "learning_curves.png"),
                         config.train.eval_metric)
  metrics_log.close()
  ckpts.close()
  return result


class _Window:
  """Training loss, gradient norm, tokens and time since the last report (device values summed
  lazily, so logging does not wait for the device every step)."""

  def __init__(self, model_config: ModelConfig):
    self.model_config = model_config
    self.reset()

  def reset(self) -> None:
    self.loss_sum, self.tokens, self.host_tokens = 0.0, 0.0, 0
    self.grad_norm_sum, self.steps = 0.0, 0
    self.terms: dict[str, Any] = {}  # the CTC model's loss terms and counts, summed
    self.tick = time.perf_counter()

  def add(self, batch: Mapping[str, np.ndarray], m: Mapping[str, jax.Array]) -> None:
    self.loss_sum, self.tokens = self.loss_sum + m["loss_sum"], self.tokens + m["tokens"]
    self.grad_norm_sum, self.steps = self.grad_norm_sum + m["grad_norm"], self.steps + 1
    self.learning_rate = m["learning_rate"]
    for key in _TERMS.keys() & m.keys():
      self.terms[key] = self.terms.get(key, 0.0) + m[key]
    self.host_tokens += int((batch["tgt_out"] > 0).sum()) + source_positions(batch,
                                                                             self.model_config)

  def report(self) -> tuple[dict[str, float], float]:
    """({train_loss, grad_norm (mean, before clipping), learning_rate, tokens_per_second, and
    with a CTC head train_ce, train_ctc (per target token, so train_loss is their weighted
    sum) and ctc_skipped (examples without a CTC term); with a coverage loss train_ce and
    train_coverage}, seconds); waits for the device."""
    loss = float(self.loss_sum) / max(float(self.tokens), 1.0)
    seconds = time.perf_counter() - self.tick
    record = {"train_loss": loss, "grad_norm": float(self.grad_norm_sum) / max(self.steps, 1),
              "learning_rate": float(self.learning_rate),
              "tokens_per_second": self.host_tokens / max(seconds, 1e-9)}
    for key, name in _TERMS.items():
      if key in self.terms:
        value = float(self.terms[key])
        record[name] = value / max(float(self.tokens), 1.0) if key.endswith("_sum") else value
    return record, seconds


# The CTC or coverage model's step metrics and their names in a report (sums are divided
# by the tokens).
_TERMS = {"ce_sum": "train_ce", "ctc_sum": "train_ctc", "ctc_skipped": "ctc_skipped",
          "ctc_examples": "ctc_examples", "coverage_sum": "train_coverage"}


def _loop(config, step_fn: Callable, state: TrainState, iterator, rng: jax.Array,
          ckpts: checkpoint.Checkpoints, loop: LoopState, metrics_log: MetricsLog,
          evaluate: Evaluator, step: int) -> dict[str, Any]:
  """Steps from `step` to num_steps: log, evaluate, checkpoint; returns the final metrics."""
  cfg, par = config.train, evaluate.par
  window, stop_reason = _Window(evaluate.model_config), None
  progress = tqdm.tqdm(total=cfg.num_steps, initial=step, disable=None, unit=" steps",
                       dynamic_ncols=True)
  while step < cfg.num_steps and stop_reason is None:
    batch = next(iterator)
    state, step_metrics = step_fn(state, batch, rng)
    step += 1
    window.add(batch, par.host(step_metrics))
    last = step == cfg.num_steps
    evaluate_now = step % cfg.eval_every == 0 or last
    save = step % cfg.checkpoint_every == 0 or last
    if not (step % cfg.log_every == 0 or evaluate_now or save):
      continue

    record, seconds = window.report()
    loop.train_seconds += seconds
    _check_finite(record["train_loss"], step, ckpts)
    _count_ctc_skipped(loop, record)
    progress.update(step - progress.n)
    progress.set_postfix(loss=f"{record['train_loss']:.3f}",
                         tok_s=f"{record['tokens_per_second']:.0f}")
    if progress.disable:
      log.debug("step %d: %s", step, json.dumps(record))
    best = False
    if evaluate_now:
      state, best, stop_reason = _validate(config, evaluate, state, loop, step, record)
    if cfg.max_minutes and loop.train_seconds >= 60 * cfg.max_minutes:
      stop_reason = "time limit"
    # Log before checkpointing: a resumed run drops logged steps past its checkpoint, so a kill
    # between the two never leaves a step unlogged.
    metrics_log.write(step, record)
    if save or best or stop_reason:
      loop.data = iterator.get_state()
      ckpts.save(step, par.host(state), dataclasses.asdict(loop), best=best)
    window.reset()
  progress.close()
  if stop_reason:
    log.info("stopped at step %d: %s", step, stop_reason)
  final = {"step": step, "stop_reason": stop_reason or "num_steps",
           f"best_{cfg.eval_metric}": loop.best, "train_minutes": loop.train_seconds / 60}
  if loop.ctc_examples:
    final.update(ctc_skipped=loop.ctc_skipped, ctc_examples=loop.ctc_examples)
  if config.data.test_split:
    scores = _test(config, evaluate, ckpts, par.host(state))
    final.update(scores)
    metrics_log.write(step, scores)
  log.info("final: %s", json.dumps(final))
  return final


def _count_ctc_skipped(loop: LoopState, record: dict[str, float]) -> None:
  """Adds a report's CTC-skipped examples to the run's count; says so the first time."""
  if "ctc_examples" not in record:
    return
  skipped = int(record["ctc_skipped"])
  if skipped and not loop.ctc_skipped:
    log.warning("CTC: %d of %d training examples so far have targets that do not fit their "
                "encoder steps (length + repeats > steps) and get no CTC term; fewer pyramid "
                "levels or model.ctc_upsample > 1 give them room (docs/model.md)", skipped,
                loop.ctc_examples + int(record["ctc_examples"]))
  loop.ctc_skipped += skipped
  loop.ctc_examples += int(record.pop("ctc_examples"))
  record["ctc_skipped_fraction"] = loop.ctc_skipped / max(loop.ctc_examples, 1)


def _check_finite(loss: float, step: int, ckpts: checkpoint.Checkpoints) -> None:
  if not math.isfinite(loss):
    ckpts.wait()
    raise FloatingPointError(
        f"training loss is {loss} at step {step}: stopping. The last good checkpoint (step "
        f"{ckpts.last.latest_step()}) is kept in {ckpts.last.directory}; lower "
        "optimizer.learning_rate or set optimizer.clip_norm and resume from it.")


def _validate(config, evaluate: Evaluator, state: TrainState, loop: LoopState, step: int,
              record: dict[str, float]) -> tuple[TrainState, bool, str | None]:
  """Evaluates on the eval split, adds the scores to `record`, and applies what they decide:
  returns (state, possibly with a lower learning rate; is best; why to stop, or None)."""
  cfg = config.train
  scores = evaluate(eval_params(evaluate.par.host(state)), config.data.eval_split)
  log.info("step %d, %s: %s", step, config.data.eval_split,
           ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
  record.update({f"eval_{k}": v for k, v in scores.items()})
  best, decay, early_stop = loop.track(scores[cfg.eval_metric], config)
  if decay:
    state = state.replace(lr_scale=state.lr_scale * config.optimizer.plateau_factor)
    log.info("step %d: %s stalled; learning rate multiplied by %s", step, cfg.eval_metric,
             config.optimizer.plateau_factor)
  return state, best, "early stopping" if early_stop else None


def _test(config, evaluate: Evaluator, ckpts: checkpoint.Checkpoints,
          host_state: TrainState) -> dict[str, float]:
  """The test split's scores with the best checkpoint's parameters (the current ones if none)."""
  ckpts.wait()
  restored = ckpts.restore_best(checkpoint.abstract(host_state))
  params = eval_params(restored[1] if restored else host_state)
  scores = evaluate(params, config.data.test_split)
  return {f"test_{k}": v for k, v in scores.items()}
