"""Decoding trained models from Python: `load(workdir)` -> `Model.decode(texts)`, attention plots,
ensembles, and `export` (the whole compiled search, weights included, as a `jax.export` artifact).

  model = s2s_jax.load("runs/g2p")                   # config, tokenizers, best checkpoint
  [r.text for r in model.decode(["hello", "world"])]   # beam search, K = 5
  model.plot_attention("hello", path="hello.png")
  both = s2s_jax.ensemble([model, s2s_jax.load("runs/g2p_seed1")])  # averages probabilities
  asr = s2s_jax.load("runs/asr_words")               # a speech model decodes audio:
  asr.decode(["one.wav", samples_int16])             # WAV paths or waveform arrays

The search itself (`SearchOptions`, `search`) is `s2s_jax.search`; checkpoints are read through
`s2s_jax.checkpoint`. Shape legend: B sentences, S source length (EOS included), T output length.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax import checkpoint as checkpoint_lib
from s2s_jax import data as data_lib
from s2s_jax import decode_io, files, plots
from s2s_jax import model as model_lib
from s2s_jax import search as search_lib
from s2s_jax.data import tokenizers as tokenizers_lib
from s2s_jax.decode_io import Hypothesis, Result
from s2s_jax.search import ModelConfigs, SearchOptions
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID

log = logging.getLogger(__name__)

__all__ = ["Hypothesis", "Model", "Result", "ensemble", "export", "load"]


@functools.partial(jax.jit, static_argnames="cfg")
def _attention(params, cfg, src_BS, tgt_in_BT):
  enc = model_lib.encode(params, cfg, src_BS)
  _, weights_BTS = model_lib.decode(params, cfg, enc, tgt_in_BT)
  return weights_BTS


# ----------------------------------------------------------------------------- the model


class Model:
  """A trained model with its tokenizers, ready to decode text.

  Attributes:
    config: the run's config (a plain dict, as saved in config.json), or {}.
    model_config: the frozen `ModelConfig`; for an ensemble (`ensemble`), one per member.
    params: the parameters (a pytree of arrays); for an ensemble, a tuple of them.
    source_tokenizer, target_tokenizer: the run's tokenizers (no source tokenizer, None, for a
      speech model: it reads audio).
    step: the checkpoint's training step (None when built in memory or for an ensemble); for
      averaged parameters, the latest of the steps averaged.
    averaged_steps: the checkpoint steps whose parameters were averaged
      (`load(..., average_last=N)`), else ().
  """

  def __init__(self, model_config: ModelConfigs, params: Any,
               source_tokenizer: tokenizers_lib.Tokenizer | None,
               target_tokenizer: tokenizers_lib.Tokenizer, *, config: dict | None = None,
               step: int | None = None, averaged_steps: Sequence[int] = ()):
    self.model_config, self.params = model_config, params
    self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
    self.config, self.step = config or {}, step
    self.averaged_steps = tuple(averaged_steps)

  @property
  def is_ensemble(self) -> bool:
    return isinstance(self.model_config, tuple)

  @property
  def first_config(self) -> model_lib.ModelConfig:
    return self.model_config[0] if self.is_ensemble else self.model_config

  @property
  def is_audio(self) -> bool:
    """The model reads audio (`ModelConfig.source='audio'`): `decode` takes WAV paths or
    waveforms at `first_config.sample_rate` Hz."""
    return self.first_config.source == "audio"

  def default_options(self) -> SearchOptions:
    """The search `decode` runs when given no options: `search.run_options` of the run."""
    return search_lib.run_options(self.config, self.model_config)

  def _check_attention(self, what: str) -> None:
    if self.is_ensemble:
      raise ValueError(f"{what}: an ensemble has one attention per member; ask a member model")
    if not self.model_config.attention_type.has_weights:
      raise ValueError(f"{what}: this model has no attention "
                       f"(attention={self.model_config.attention!r})")

  def _inputs(self, max_source_len: int) -> decode_io.Inputs:
    return decode_io.for_model(self.first_config, self.source_tokenizer, max_source_len)

  def source_ids(self, text: str, max_source_len: int = 256) -> tuple[list[int], bool]:
    """(ids with EOS, truncated?): what the model reads for `text`, as in training."""
    inputs = decode_io.TextInputs(self.first_config, self.source_tokenizer, max_source_len)
    return inputs.source_ids(text)

  def decode(self, texts: Sequence[str], options: SearchOptions | None = None, *,
             max_source_len: int = 256, seed: int = 0, batch_size: int = 64,
             return_attention: bool = False, **search_kw: Any) -> list[Result]:
    """Decodes `texts`; returns one `Result` per text, in input order. A speech model
    (`is_audio`) takes WAV file paths or 1-D waveforms (int16, or floats in [-1, 1]) at its
    sample rate instead; files at other rates are resampled.

    The search is `options` (default `default_options()`: beam search, K = 5) with any
    `SearchOptions` field given as a keyword replacing its value, e.g. `beam_size=1`.
    Inputs are sorted by length and decoded `batch_size` at a time (padded to a multiple of 8
    tokens or 16 frames, so few shapes compile); the order is restored after. A source longer
    than `max_source_len` tokens (EOS included) is cut, with a warning, and marked `truncated`.
    Sampling draws sentence i's samples from `seed` and i, whatever shares its batch.
    """
    texts = decode_io.as_input_list(texts, audio=self.is_audio)
    _check_count("batch_size", batch_size, 1)
    _check_count("max_source_len", max_source_len, 2)
    _check_count("seed", seed, 0)
    opts = search_lib.with_overrides(options or self.default_options(), search_kw)
    if return_attention:
      self._check_attention("return_attention=True")
    inputs = self._inputs(max_source_len)
    return self._decode(inputs, inputs.read(texts), opts, seed, batch_size, return_attention)

  def _decode(self, inputs: decode_io.Inputs, items: list[decode_io.Input],
              opts: SearchOptions, seed: int, batch_size: int, return_attention: bool
              ) -> list[Result]:
    """The decode loop: items sorted by length, searched `batch_size` at a time."""
    todo = sorted((i for i, x in enumerate(items) if x.steps), key=lambda i: items[i].steps)
    hyps: dict[int, tuple[Hypothesis, ...]] = {}
    attention: dict[int, np.ndarray] = {}
    rng = jax.random.PRNGKey(seed)
    for start in range(0, len(todo), batch_size):
      rows = todo[start:start + batch_size]
      # A power-of-two row count (<= batch_size; the first row repeated): few compiled shapes.
      padded = rows + rows[:1] * (min(batch_size, 1 << (len(rows) - 1).bit_length()) - len(rows))
      src = inputs.batch([items[i] for i in padded])
      out = jax.device_get(search_lib.search_jit(
          self.params, self.model_config, src, opts, rng=rng,
          row_ids_B=np.array(padded, np.int32)))
      for r, i in enumerate(rows):
        hyps[i] = decode_io.hypotheses(out, r, self.target_tokenizer, items[i].unknown)
      if return_attention:
        best = [hyps[i][0].ids for i in rows]
        weights = self._attention_weights(inputs.batch([items[i] for i in rows]), best)
        for r, i in enumerate(rows):
          columns = self.first_config.memory_steps(items[i].steps)
          attention[i] = weights[r, :len(best[r]) + 1, :columns]
    return [Result(x.name, hyps.get(i, ()), x.truncated, attention.get(i), x.unknown)
            for i, x in enumerate(items)]

  def split(self, name: str) -> Any:
    """A split of the dataset this model was trained on (as the run's config names it): a
    `TextPairs`, or for a speech model an `AudioPairs` (waveforms, transcripts)."""
    cfg = self.config["data"]
    return data_lib.open_dataset(cfg["dataset"], data_dir=cfg["data_dir"] or None,
                                 options=dict(cfg["options"])).split(name)

  def _attention_weights(self, src: Any, outputs: list[Sequence[int]]) -> np.ndarray:
    """Teacher-forced attention weights [B, T, S] for outputs (ids without EOS)."""
    T = -(-(max(map(len, outputs)) + 1) // 8) * 8
    tgt_in_BT = np.full((len(outputs), T), PAD_ID, np.int32)
    for r, ids in enumerate(outputs):
      tgt_in_BT[r, 0] = BOS_ID
      tgt_in_BT[r, 1:len(ids) + 1] = ids
    return np.asarray(_attention(self.params, self.model_config, src, tgt_in_BT))

  def attention(self, source: str, output: str | None = None, **decode_kw: Any
                ) -> tuple[np.ndarray, list[str], list[str]]:
    """`(weights [output tokens + EOS, source tokens + EOS], source pieces, output pieces)`
    for `output` (default: the model's own best output for `source`). For a speech model the
    source is a WAV path or a waveform, and the columns are encoder steps labelled with their
    start time."""
    self._check_attention("attention")
    inputs = self._inputs(decode_kw.pop("max_source_len", 256))
    item = inputs.read([source])[0]  # a WAV path is read once, for the decode and the weights
    if output is None:
      opts = search_lib.with_overrides(self.default_options(), decode_kw)
      out_ids = list(self._decode(inputs, [item], opts, 0, 1, False)[0].hypotheses[0].ids)
    else:
      out_ids = self.target_tokenizer.encode(output)
    weights = self._attention_weights(inputs.batch([item], pad_multiple=1), [out_ids])
    columns = self.first_config.memory_steps(item.steps)
    return (weights[0, :len(out_ids) + 1, :columns], inputs.labels(item),
            self.target_tokenizer.pieces([*out_ids, EOS_ID]))

  def plot_attention(self, source: str, output: str | None = None, path: str = "attention.png",
                     **decode_kw: Any) -> str:
    """Writes a heatmap of the attention weights (source tokens across, output tokens down) to
    `path` (PNG); `output` defaults to the model's best output. Returns `path`."""
    weights, src_pieces, out_pieces = self.attention(source, output, **decode_kw)
    return plots.attention_heatmap(weights, src_pieces, out_pieces, path,
                                   xlabel="time (encoder steps)" if self.is_audio else "source")


def ensemble(models: Sequence[Model]) -> Model:
  """One model whose every search step uses the members' mean next-token probability.

  Members must share both vocabularies (runs trained on the same data with the same tokenizer
  settings build identical ones); their architectures may differ. The result decodes and
  exports like any `Model` (not attention: each member has its own); its `config` is the
  first member's, so `split` reads the first member's dataset.

  Raises:
    ValueError: fewer than two members, or a member's source or target vocabulary differs.
  """
  models = list(models)
  if len(models) < 2:
    raise ValueError(f"an ensemble needs at least two models, got {len(models)}")
  configs, params = [], []
  for i, m in enumerate(models):
    if m.is_audio != models[0].is_audio or (
        m.is_audio and m.first_config.feature_config != models[0].first_config.feature_config):
      raise ValueError(f"ensemble member {i} reads {'audio' if m.is_audio else 'text'} "
                       f"({m.first_config.feature_config if m.is_audio else 'tokens'}) unlike "
                       "member 0; members must read the same inputs")
    for side in ("source", "target") if not m.is_audio else ("target",):
      if not _same_vocabulary(getattr(models[0], f"{side}_tokenizer"),
                              getattr(m, f"{side}_tokenizer")):
        raise ValueError(f"ensemble member {i} has a different {side} vocabulary from member 0; "
                         "members must be trained with the same data and tokenizer settings")
    configs += m.model_config if m.is_ensemble else [m.model_config]
    params += m.params if m.is_ensemble else [m.params]
  return Model(tuple(configs), tuple(params), models[0].source_tokenizer,
               models[0].target_tokenizer, config=models[0].config)


def _same_vocabulary(a: tokenizers_lib.Tokenizer, b: tokenizers_lib.Tokenizer) -> bool:
  ids = range(a.vocab_size)
  return (type(a) is type(b) and getattr(a, "kind", None) == getattr(b, "kind", None)
          and a.vocab_size == b.vocab_size and a.pieces(ids) == b.pieces(ids))


# ----------------------------------------------------------------------------- loading


def load(workdir: str, checkpoint: str | int = "best", *, average_last: int = 0) -> Model:
  """The model trained in `workdir` (by train.py): its config, tokenizers and parameters (the
  moving average of the parameters when the run trained with `train.ema_decay > 0`).

  Args:
    workdir: a training run's directory (config.json, tokenizers/, checkpoints/).
    checkpoint: 'best' (the best validation step; the latest step when the run never
      evaluated), 'last' (the latest step), or a step number.
    average_last: N > 0 loads the elementwise mean of the parameters of the N most recent
      checkpoints the run kept (under checkpoints/last and checkpoints/best) instead of one
      checkpoint; `Model.averaged_steps` names them.

  Raises:
    FileNotFoundError: `workdir` is not a finished-enough run (names what is missing).
    ValueError: the checkpoint asked for does not exist (lists those that do); fewer than
      `average_last` checkpoints are kept.
  """
  workdir = os.path.abspath(workdir)
  config_path = os.path.join(workdir, "config.json")
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir} does not exist")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{workdir} is not a training run: {config_path} is missing")
  with open(config_path) as f:
    config = json.load(f)
  tokenizer_dir = os.path.join(workdir, "tokenizers")
  if not os.path.exists(os.path.join(tokenizer_dir, tokenizers_lib.MANIFEST)):
    raise FileNotFoundError(f"{tokenizer_dir}/{tokenizers_lib.MANIFEST} is missing: the run "
                            "stopped before its tokenizers were written")
  src_tok, tgt_tok = tokenizers_lib.load_tokenizers(tokenizer_dir)
  model_config = model_lib.ModelConfig.for_vocabularies(
      config["model"], 0 if src_tok is None else src_tok.vocab_size, tgt_tok.vocab_size)
  directory = os.path.join(workdir, "checkpoints")
  if average_last:
    if checkpoint != "best":
      raise ValueError(f"average_last={average_last} replaces checkpoint={checkpoint!r}; give "
                       "one or the other")
    steps, trees = checkpoint_lib.restore_last_params(directory, average_last)
    params = checkpoint_lib.average_params(trees, [f"checkpoint step {step}" for step in steps])
    log.info("loaded %s: the mean of steps %s", workdir, list(steps))
    return Model(model_config, params, src_tok, tgt_tok, config=config, step=steps[-1],
                 averaged_steps=steps)
  step, params = checkpoint_lib.restore_params(directory, checkpoint)
  log.info("loaded %s step %d", workdir, step)
  return Model(model_config, params, src_tok, tgt_tok, config=config, step=step)


# ----------------------------------------------------------------------------- export


def export(model: Model | str, path: str, *, checkpoint: str | int = "best",
           **search_kw: Any) -> str:
  """Serializes the compiled search (encoder + search loop, weights as constants) to `path`.

  The artifact is a `jax.export.Exported` with a symbolic batch size and source length:
  `jax.export.deserialize(bytes).call(src_BS)` maps int32 source ids [B, S] (EOS-terminated,
  trailing PAD; `Model.source_ids` makes them, the workdir's tokenizers read them back) to
  `(tokens_BRT, logprob_BR, score_BR, length_BR)` as `Model.decode` computes them. Needs only
  jax to run. `search_kw` are `SearchOptions` fields (not sampling: its seed would be baked in).
  """
  if isinstance(model, str):
    model = load(model, checkpoint)
  opts = SearchOptions(**search_kw)
  if opts.method == "sample":
    raise ValueError("export supports method='beam' or 'greedy'")
  if model.is_audio:  # features.log_mel frames the waveform with a concrete, not symbolic, N
    raise ValueError("export supports token-source models; a speech model's front end needs a "
                     "concrete waveform length (decode it with Model.decode)")
  params, cfg = model.params, model.model_config

  def decode_fn(src_BS):
    return tuple(search_lib.search(params, cfg, src_BS, opts, opts.max_len))

  b, s = jax.export.symbolic_shape("b, s")
  exported = jax.export.export(jax.jit(decode_fn))(jax.ShapeDtypeStruct((b, s), jnp.int32))
  files.atomic_write(path, exported.serialize())
  return path


def _check_count(name: str, value: Any, least: int) -> None:
  """An int argument (not a bool) of at least `least`: TypeError / ValueError naming it."""
  search_lib.check_type(name, value, int)
  if value < least:
    raise ValueError(f"{name}={value} must be >= {least}")
