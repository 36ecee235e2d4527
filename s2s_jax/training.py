"""Training: the train state, optimizers and schedules, pure train / eval steps, and the loop.

Shape legend: B batch rows, S source length, T target length, V target vocabulary.

`train_step(state, batch, rng)` is a module-level pure function: dropout randomness is
`fold_in(rng, state.step)`, so a resumed run draws exactly what an uninterrupted one would. The
loss is normalized by the global number of target tokens (under pmap, sums are `psum`med before
dividing), so 1 device, a jit mesh and pmap compute the same update for the same global batch.
The learning rate is `schedule(update) * state.lr_scale`; the loop lowers `lr_scale` when the
validation metric stalls ("decay on plateau"). With `train.ema_decay > 0` the state also carries
an exponential moving average of the parameters (`ema_params`, updated inside the step and saved
in checkpoints); evaluation, the best-checkpoint choice, the test score and decoding then use it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
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
from absl import logging

from s2s_jax import checkpoint, decoding, losses, metrics, parallel
from s2s_jax import data as data_lib
from s2s_jax.model import ModelConfig, Seq2Seq

OPTIMIZERS = ("adam", "adamw", "sgd", "adafactor")
SCHEDULES = ("constant", "warmup_rsqrt", "warmup_cosine")
LOWER_IS_BETTER = {"wer": True, "per": True, "loss": True, "bleu": False, "chrf": False,
                   "accuracy": False}


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


# ----------------------------------------------------------------------------- optimizers


def make_schedule(cfg: Mapping[str, Any], num_updates: int) -> optax.Schedule:
  """The learning rate as a function of the update count."""
  lr, warmup = cfg["learning_rate"], max(int(cfg["warmup_steps"]), 1)
  name = cfg["schedule"]
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "warmup_rsqrt":  # linear warmup, then lr * sqrt(warmup / step)
    return lambda s: lr * jnp.minimum((s + 1) / warmup, jnp.sqrt(warmup / jnp.maximum(s + 1, 1)))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(num_updates, warmup + 1),
                                              end_value=cfg["final_learning_rate"])
  raise ValueError(f"optimizer.schedule={name!r} is invalid; allowed values: {SCHEDULES}")


def make_optimizer(cfg: Mapping[str, Any]) -> optax.GradientTransformation:
  """Clipping + the update direction at unit learning rate (the step multiplies by the rate).

  optax's adam / adamw / sgd / adafactor are linear in their learning rate, so scaling their
  unit-rate updates by `schedule * lr_scale` equals running them with that rate. Gradient
  accumulation wraps the whole thing in `optax.MultiSteps`.
  """
  name = cfg["name"]
  if name == "adam":
    direction = optax.adam(1.0)
  elif name == "adamw":
    direction = optax.adamw(1.0, weight_decay=cfg["weight_decay"])
  elif name == "sgd":
    direction = optax.sgd(1.0, momentum=cfg["momentum"] or None)
  elif name == "adafactor":
    direction = optax.adafactor(1.0)
  else:
    raise ValueError(f"optimizer.name={name!r} is invalid; allowed values: {OPTIMIZERS}")
  if cfg["clip_norm"]:
    direction = optax.chain(optax.clip_by_global_norm(cfg["clip_norm"]), direction)
  if cfg["accumulate_steps"] > 1:
    direction = optax.MultiSteps(direction, every_k_schedule=cfg["accumulate_steps"])
  return direction


def create_train_state(rng: jax.Array, model: Seq2Seq, tx: optax.GradientTransformation,
                       schedule: optax.Schedule, example: Mapping[str, np.ndarray], *,
                       ema: bool = False) -> TrainState:
  """Initial parameters and optimizer state; with `ema`, a moving average starting at them."""
  # Eager on purpose: with jax 0.10.2 on CPU, a jitted init (orthogonal init's QR inside) left
  # a later while-loop decode of the reference workload hanging in the same process.
  params = model.init(rng, example["src"][:1], example["tgt_in"][:1])["params"]
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
               axis_name: str | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on `batch` (src [B, S], tgt_in / tgt_out [B, T]); pure.

  `ema_decay` is used when the state carries `ema_params`; the average moves only on steps
  that update the parameters (every `accumulate_steps`-th).
  """
  dropout_rng = jax.random.fold_in(rng, state.step)
  if axis_name is not None:  # pmap: each device drops out its own rows differently
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))

  def loss_fn(params):
    logits_BTV = state.apply_fn({"params": params}, batch["src"], batch["tgt_in"],
                                deterministic=False, rngs={"dropout": dropout_rng})
    return losses.cross_entropy(logits_BTV, batch["tgt_out"], label_smoothing=label_smoothing)

  (loss_sum, tokens), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  if axis_name is not None:
    loss_sum, tokens, grads = jax.lax.psum((loss_sum, tokens, grads), axis_name)
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
                     "grad_norm": optax.tree.norm(grads)}


def eval_step(params: Any, apply_fn: Callable, batch: Mapping[str, jax.Array]
              ) -> dict[str, jax.Array]:
  """Summed (unsmoothed) cross-entropy, token count and correct tokens of a batch."""
  logits_BTV = apply_fn({"params": params}, batch["src"], batch["tgt_in"])
  loss_sum, tokens = losses.cross_entropy(logits_BTV, batch["tgt_out"])
  correct, _ = losses.token_accuracy(logits_BTV, batch["tgt_out"])
  return {"loss_sum": loss_sum, "tokens": tokens, "correct": correct}


def predict(params: Any, model: Seq2Seq, src_BS: jax.Array, max_length: int) -> jax.Array:
  """Greedy output ids [B, max_length] (EOS-terminated, PAD after)."""
  enc = model.apply({"params": params}, src_BS, method=Seq2Seq.encode)
  step_fn = lambda carry, token: model.apply(  # noqa: E731
      {"params": params}, enc, carry, token, method=Seq2Seq.decode_step)
  return decoding.greedy(step_fn, enc.initial_carry, src_BS.shape[0], max_length).tokens_BRT[:, 0]


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class Inputs:
  source_tokenizer: data_lib.Tokenizer
  target_tokenizer: data_lib.Tokenizer
  train: data_lib.Pipeline
  evals: dict[str, tuple[data_lib.Pipeline, list[list[str]]]]  # split -> (batches, references)


def prepare_inputs(cfg: Mapping[str, Any], workdir: str, batch_multiple: int) -> Inputs:
  """Opens the dataset, trains or loads the tokenizers, and builds the pipelines.

  With several processes, process 0 prepares the dataset and trains the tokenizers first and
  the others then read what it wrote (a shared data_dir and workdir are assumed).
  """
  opened = _open_and_tokenize(cfg, workdir) if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("s2s_jax: data prepared")
  dataset, sources, targets, src_tok, tgt_tok = opened or _open_and_tokenize(cfg, workdir)

  def tokenized(srcs, tgts):
    return data_lib.TokenizedSplit.build(zip(srcs, tgts, strict=True), src_tok, tgt_tok)

  buckets = tuple(cfg["bucket_lengths"])
  train = data_lib.Pipeline(tokenized(sources, targets), data_lib.BatchingConfig(
      max_tokens=cfg["max_tokens"], bucket_lengths=buckets,
      max_source_length=cfg["max_source_length"] or None,
      max_target_length=cfg["max_target_length"] or None, batch_multiple=batch_multiple),
      shuffle=True, seed=cfg["seed"], name=cfg["train_split"])
  evals = {}
  for split in (cfg["eval_split"], cfg["test_split"]):
    if split and split not in evals:
      pairs = dataset.split(split)
      data = tokenized(*pairs.columns(desc=f"reading {split} split"))
      # Evaluation never drops an example: one more bucket holds the longest, if need be.
      longest = int(max(np.diff(data.src_offsets).max() + 1, np.diff(data.tgt_offsets).max() + 1))
      lengths = buckets if longest <= buckets[-1] else (*buckets, -(-longest // 8) * 8)
      max_tokens = max(cfg["eval_max_tokens"], lengths[-1] * batch_multiple)
      pipeline = data_lib.Pipeline(
          data, data_lib.BatchingConfig(max_tokens=max_tokens, bucket_lengths=lengths,
                                        batch_multiple=batch_multiple),
          shuffle=False, num_epochs=1, name=split)
      evals[split] = (pipeline, pairs.all_references())
  return Inputs(src_tok, tgt_tok, train, evals)


def _open_and_tokenize(cfg, workdir):
  dataset = data_lib.open_dataset(cfg["dataset"], data_dir=cfg["data_dir"] or None,
                                  options=dict(cfg["options"]))
  for split, skipped in dataset.skipped.items():
    if skipped:
      logging.warning("%s: %d bad lines were skipped while preparing: %s", split,
                      sum(skipped.values()), dict(skipped))
  if cfg.get("train_tsv"):  # e.g. a teacher's outputs (sequence-level distillation)
    from s2s_jax.data import parallel_text
    rows = list(parallel_text.read_tsv(cfg["train_tsv"]))
    sources, targets = [r[1] for r in rows], [r[2] for r in rows]
    logging.info("training on %d pairs of %s instead of the %s split", len(rows),
                 cfg["train_tsv"], cfg["train_split"])
  else:
    sources, targets = dataset.split(cfg["train_split"]).columns(desc="reading train split")
  src_tok, tgt_tok = data_lib.get_or_train_tokenizers(
      os.path.join(workdir, "tokenizers"),
      data_lib.TokenizerSpec.from_dict(cfg["source_tokenizer"]),
      data_lib.TokenizerSpec.from_dict(cfg["target_tokenizer"]), sources, targets,
      shared=cfg["shared_vocab"])
  return dataset, sources, targets, src_tok, tgt_tok


# ----------------------------------------------------------------------------- the loop


class Run:
  """Compiled steps and evaluation for one model on one mesh (jit) or set of devices (pmap)."""

  def __init__(self, config, model: Seq2Seq, inputs: Inputs, mesh):
    self.config, self.model, self.inputs, self.mesh = config, model, inputs, mesh
    self.pmap = config.train.parallel == "pmap"
    step = functools.partial(train_step, label_smoothing=config.train.label_smoothing,
                             accumulate_steps=config.optimizer.accumulate_steps,
                             ema_decay=config.train.ema_decay)
    self._step = parallel.pmap_train_step(step) if self.pmap else None
    self._step_builder = step
    self._eval = jax.jit(eval_step, static_argnums=1)
    self._predict = jax.jit(predict, static_argnums=(1, 3))

  def compile_step(self, state: TrainState) -> None:
    if not self.pmap:
      self._step = parallel.jit_train_step(self._step_builder, self.mesh, state)

  def step(self, state, batch, rng):
    if self.pmap:
      return self._step(state, parallel.split_for_pmap(batch), rng)
    return self._step(state, parallel.global_batch(self.mesh, batch), rng)

  def host_params(self, state: TrainState) -> Any:
    """What evaluation uses (`eval_params`), one copy under pmap."""
    params = eval_params(state)
    return parallel.unreplicate(params) if self.pmap else params

  def evaluate(self, params: Any, split: str, decode: bool) -> dict[str, float]:
    """Loss, perplexity, token accuracy and (with `decode`) the task metrics of a split."""
    pipeline, references = self.inputs.evals[split]
    sums = {"loss_sum": 0.0, "tokens": 0.0, "correct": 0.0}
    predictions: dict[int, str] = {}
    factor = self.config.train.max_decode_length_factor
    apply_fn = self.model.apply
    for local in pipeline.iterator():
      if self.pmap:  # params live on one device here: evaluate the whole global batch there
        batch, gather = {k: jnp.asarray(_gather(v)) for k, v in local.items()}, np.asarray
      else:
        batch, gather = parallel.global_batch(self.mesh, local), _gather
      for key, value in self._eval(params, apply_fn, batch).items():
        sums[key] += float(value)
      if decode:
        length = int(factor * local["src"].shape[1]) + 10
        ids = gather(self._predict(params, self.model, batch["src"], length))
        for row, index in enumerate(gather(batch["index"])):
          if index >= 0:
            predictions[int(index)] = self.inputs.target_tokenizer.decode(ids[row])
    loss = sums["loss_sum"] / max(sums["tokens"], 1)
    result = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
              "accuracy": sums["correct"] / max(sums["tokens"], 1)}
    if decode and predictions:
      order = sorted(predictions)
      hyps = [predictions[i] for i in order]
      refs = [references[i] for i in order]
      result.update(metrics.task_scores(self.config.train.eval_metric, hyps, refs))
      result["decoded"] = len(order)
    return result


def _gather(x: jax.Array | np.ndarray) -> np.ndarray:
  """A global array's full value (or every process's rows of a host array) on every process."""
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


class MetricsLog:
  """metrics.jsonl + TensorBoard, written by process 0; resuming drops lines past the step."""

  def __init__(self, workdir: str, resume_step: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if not self.enabled:
      return
    if os.path.exists(self.path):  # a killed run may have logged steps after its checkpoint
      with open(self.path) as f:
        kept = [line for line in f if _logged_step(line) <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(kept)
    import tensorboardX
    self.writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, values: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, **values}) + "\n")
    for key, value in values.items():
      self.writer.add_scalar(key, value, step)
    self.writer.flush()

  def close(self) -> None:
    if self.enabled:
      self.writer.close()


def _logged_step(line: str) -> float:
  """The step of a metrics.jsonl line; inf for a line cut short by a kill (then dropped)."""
  try:
    return json.loads(line)["step"]
  except (json.JSONDecodeError, KeyError):
    return math.inf


def _check_config(config) -> None:
  if config.train.parallel not in ("jit", "pmap"):
    raise ValueError(f"train.parallel={config.train.parallel!r} is invalid; allowed: jit, pmap")
  if config.train.eval_metric not in LOWER_IS_BETTER:
    raise ValueError(f"train.eval_metric={config.train.eval_metric!r} is invalid; allowed "
                     f"values: {tuple(LOWER_IS_BETTER)}")
  for name in ("log_every", "eval_every", "checkpoint_every", "num_steps"):
    if config.train[name] < 1:
      raise ValueError(f"train.{name}={config.train[name]} must be >= 1")
  if not 0.0 <= config.train.ema_decay < 1.0:
    raise ValueError(f"train.ema_decay={config.train.ema_decay} must be in [0, 1) (0 = no moving "
                     "average of the parameters)")


def _initialize_distributed(cfg) -> None:
  if cfg.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
  if cfg.coordinator_address:
    jax.distributed.initialize(coordinator_address=cfg.coordinator_address,
                               num_processes=cfg.num_processes, process_id=cfg.process_id)
  else:
    jax.distributed.initialize()
  logging.info("process %d of %d; %d local of %d devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains (resuming from `workdir` when it holds checkpoints), evaluates, and returns the final
  metrics. Writes config.json, tokenizers/, checkpoints/, metrics.jsonl, tensorboard/ and
  learning_curves.png into `workdir`."""
  _check_config(config)
  if config.train.distributed:
    _initialize_distributed(config.train)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=1))

  devices = jax.local_device_count() if config.train.parallel == "pmap" else jax.device_count()
  if config.train.parallel == "pmap":
    devices *= jax.process_count()
  inputs = prepare_inputs({**config.data, "seed": config.seed}, workdir, batch_multiple=devices)
  model_cfg = ModelConfig.from_dict({**config.model,
                                     "src_vocab_size": inputs.source_tokenizer.vocab_size,
                                     "tgt_vocab_size": inputs.target_tokenizer.vocab_size})
  model = Seq2Seq(model_cfg)
  opt = config.optimizer
  num_updates = config.train.num_steps // opt.accumulate_steps
  tx = make_optimizer(opt)
  rng_init, rng_train = jax.random.split(jax.random.PRNGKey(config.seed))
  example = inputs.train.dataset()[0]
  state = create_train_state(rng_init, model, tx, make_schedule(opt, num_updates), example,
                             ema=config.train.ema_decay > 0)
  mesh = parallel.make_mesh()
  run = Run(config, model, inputs, mesh)
  state = jax.device_put(state, parallel.state_sharding(mesh, state))
  ckpts = checkpoint.Checkpoints(os.path.join(workdir, "checkpoints"),
                                 keep=config.train.keep_checkpoints)
  loop = {"data": None, "best": None, "bad_evals": 0, "plateau_evals": 0, "train_seconds": 0.0}
  restored = ckpts.restore_latest(checkpoint.abstract(state))
  start = 0
  if restored is not None:
    start, state, loop = restored
    logging.info("resuming from step %d", start)
  if run.pmap:
    state = parallel.replicate(jax.device_get(state))
  run.compile_step(state)
  iterator = inputs.train.iterator(num_workers=config.data.num_workers)
  if loop["data"] is not None:
    iterator.set_state(loop["data"])
  log = MetricsLog(workdir, start)
  result = _loop(config, run, state, iterator, rng_train, ckpts, loop, log, start)
  ckpts.wait()
  if jax.process_index() == 0:
    plot_learning_curves(log.path, os.path.join(workdir, "learning_curves.png"),
                         config.train.eval_metric)
  log.close()
  ckpts.close()
  return result


class _Window:
  """Training loss, gradient norm, tokens and time since the last report (device values summed
  lazily, so logging does not wait for the device every step)."""

  def __init__(self, pmap: bool):
    self.pmap = pmap
    self.reset()

  def reset(self) -> None:
    self.loss_sum, self.tokens, self.host_tokens = 0.0, 0.0, 0
    self.grad_norm_sum, self.steps = 0.0, 0
    self.tick = time.perf_counter()

  def add(self, batch: Mapping[str, np.ndarray], step_metrics: Mapping[str, jax.Array]) -> None:
    m = _first(step_metrics, self.pmap, ("loss_sum", "tokens", "learning_rate", "grad_norm"))
    self.loss_sum, self.tokens = self.loss_sum + m["loss_sum"], self.tokens + m["tokens"]
    self.grad_norm_sum, self.steps = self.grad_norm_sum + m["grad_norm"], self.steps + 1
    self.learning_rate = m["learning_rate"]
    self.host_tokens += int((batch["tgt_out"] > 0).sum() + (batch["src"] > 0).sum())

  def report(self) -> tuple[dict[str, float], float]:
    """({train_loss, grad_norm (mean, before clipping), learning_rate, tokens_per_second},
    seconds); waits for the device."""
    loss = float(self.loss_sum) / max(float(self.tokens), 1.0)
    seconds = time.perf_counter() - self.tick
    return {"train_loss": loss, "grad_norm": float(self.grad_norm_sum) / max(self.steps, 1),
            "learning_rate": float(self.learning_rate),
            "tokens_per_second": self.host_tokens / max(seconds, 1e-9)}, seconds


def _track(config, loop: dict, value: float) -> tuple[bool, bool, bool]:
  """Updates best / plateau / early-stopping counters with a validation value; returns
  (is best, decay the learning rate now, stop early)."""
  lower = LOWER_IS_BETTER[config.train.eval_metric]
  best = loop["best"] is None or (value < loop["best"] if lower else value > loop["best"])
  if best:
    loop.update(best=value, bad_evals=0, plateau_evals=0)
    return True, False, False
  loop["bad_evals"] += 1
  loop["plateau_evals"] += 1
  decay = (config.optimizer.plateau_factor < 1
           and loop["plateau_evals"] >= config.optimizer.plateau_patience)
  if decay:
    loop["plateau_evals"] = 0
  patience = config.train.early_stopping_patience
  return False, decay, bool(patience and loop["bad_evals"] >= patience)


def _loop(config, run: Run, state, iterator, rng, ckpts, loop, log, step) -> dict[str, Any]:
  """Steps from `step` to num_steps: log, evaluate, checkpoint; returns the final metrics."""
  cfg = config.train
  decode = cfg.eval_metric not in ("loss", "accuracy")
  window = _Window(run.pmap)
  stop_reason = None
  progress = tqdm.tqdm(total=cfg.num_steps, initial=step, disable=None, unit=" steps",
                       dynamic_ncols=True)
  while step < cfg.num_steps and stop_reason is None:
    batch = next(iterator)
    state, step_metrics = run.step(state, batch, rng)
    step += 1
    window.add(batch, step_metrics)
    last = step == cfg.num_steps
    evaluate = step % cfg.eval_every == 0 or last
    save = step % cfg.checkpoint_every == 0 or last
    if not (step % cfg.log_every == 0 or evaluate or save):
      continue

    record, seconds = window.report()
    loop["train_seconds"] += seconds
    if not math.isfinite(record["train_loss"]):
      ckpts.wait()
      raise FloatingPointError(
          f"training loss is {record['train_loss']} at step {step}: stopping. The last good "
          f"checkpoint (step {ckpts.last.latest_step()}) is kept in {ckpts.last.directory}; "
          "lower optimizer.learning_rate or set optimizer.clip_norm and resume from it.")
    progress.update(step - progress.n)
    progress.set_postfix(loss=f"{record['train_loss']:.3f}",
                         tok_s=f"{record['tokens_per_second']:.0f}")
    if progress.disable:
      logging.info("step %d: %s", step, json.dumps(record))

    best = False
    if evaluate:
      scores = run.evaluate(run.host_params(state), config.data.eval_split, decode)
      logging.info("step %d eval on %s: %s", step, config.data.eval_split, json.dumps(scores))
      record.update({f"eval_{k}": v for k, v in scores.items()})
      best, decay, early_stop = _track(config, loop, scores[cfg.eval_metric])
      if decay:
        state = state.replace(lr_scale=state.lr_scale * config.optimizer.plateau_factor)
        logging.info("step %d: %s stalled; learning rate multiplied by %s", step,
                     cfg.eval_metric, config.optimizer.plateau_factor)
      if early_stop:
        stop_reason = "early stopping"
    if cfg.max_minutes and loop["train_seconds"] >= 60 * cfg.max_minutes:
      stop_reason = "time limit"

    # Log before checkpointing: a resumed run drops logged steps past its checkpoint, so a kill
    # between the two never leaves a step unlogged.
    log.write(step, record)
    if save or best or stop_reason:
      loop["data"] = iterator.get_state()
      ckpts.save(step, _host_state(state, run.pmap), dict(loop), best=best)
    window.reset()
  progress.close()
  if stop_reason:
    logging.info("stopped at step %d: %s", step, stop_reason)

  final = {"step": step, "stop_reason": stop_reason or "num_steps",
           f"best_{cfg.eval_metric}": loop["best"], "train_minutes": loop["train_seconds"] / 60}
  if config.data.test_split:  # with the best checkpoint's parameters
    ckpts.wait()
    host_state = _host_state(state, run.pmap)
    restored = ckpts.restore_best(checkpoint.abstract(host_state))
    params = eval_params(restored[1] if restored else host_state)
    scores = {f"test_{k}": v for k, v in
              run.evaluate(params, config.data.test_split, decode).items()}
    final.update(scores)
    log.write(step, scores)
  logging.info("final: %s", json.dumps(final))
  return final


def _first(tree: Any, pmap: bool, keys) -> dict:
  """The named metrics, taking device 0's copy under pmap (they are psummed, so equal)."""
  return {k: (tree[k][0] if pmap else tree[k]) for k in keys}


def _host_state(state: TrainState, pmap: bool) -> TrainState:
  return parallel.unreplicate(state) if pmap else state


def plot_learning_curves(metrics_path: str, out_path: str, metric: str) -> None:
  """Train / validation loss and the validation task metric against steps."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  with open(metrics_path) as f:
    rows = [json.loads(line) for line in f]
  fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
  for key, label in (("train_loss", "train loss"), ("eval_loss", "validation loss")):
    points = [(r["step"], r[key]) for r in rows if key in r]
    if points:
      ax_loss.plot(*zip(*points, strict=True), label=label)
  points = [(r["step"], r[f"eval_{metric}"]) for r in rows if f"eval_{metric}" in r]
  if points:
    ax_metric.plot(*zip(*points, strict=True), marker="o")
  ax_loss.set(xlabel="step", ylabel="cross-entropy per token")
  ax_loss.legend()
  ax_metric.set(xlabel="step", ylabel=f"validation {metric}")
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)
