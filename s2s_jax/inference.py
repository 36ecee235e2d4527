"""Decoding trained models from Python: `load(workdir)` -> `Model.decode(texts)`, attention plots,
ensembles, and `export` (the whole compiled search, weights included, as a `jax.export` artifact).

  model = s2s_jax.load("runs/g2p")                   # config, tokenizers, best checkpoint
  [r.text for r in model.decode(["hello", "world"])]   # beam search, K = 5
  model.plot_attention("hello", path="hello.png")
  both = s2s_jax.ensemble([model, s2s_jax.load("runs/g2p_seed1")])  # averages probabilities

Shape legend: B sentences, S source length (EOS included), R hypotheses per sentence, T output
length, K beam size, M ensemble members, N rows searched (B * K), V target vocabulary.

`search` is the one pure function behind `Model.decode` and `export`: source ids in, hypotheses
out, with every sentence's output limit computed from its own source length, so the output for a
sentence does not depend on what shares its batch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from s2s_jax import data as data_lib
from s2s_jax import decoding
from s2s_jax import model as model_lib
from s2s_jax.data import tokenizers as tokenizers_lib
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID

METHODS = ("beam", "greedy", "sample")


@dataclasses.dataclass(frozen=True)
class SearchOptions:
  """How to search. Compiled in: each distinct value set compiles once per input shape.

  method: 'beam', 'greedy' or 'sample' (beam_size 1 runs greedy).
  beam_size, nbest: beam width K and hypotheses returned per sentence (<= K; for sampling the
    number of samples drawn per sentence, best first).
  alpha, length_penalty: beam ranking `logprob / penalty(length)`, penalty 'gnmt'
    ((5 + length) / 6) ** alpha or 'average' length ** alpha (see `s2s_jax.decoding`).
  max_len: absolute cap on output tokens (EOS included).
  max_len_ratio, max_len_offset: a sentence's outputs have at most
    `ceil(max_len_ratio * source tokens) + max_len_offset` tokens (and at most max_len).
  temperature, top_k, top_p: sampling filters.
  """

  method: str = "beam"
  beam_size: int = 5
  nbest: int = 1
  alpha: float = 0.6
  length_penalty: str = "gnmt"
  max_len: int = 256
  max_len_ratio: float = 2.0
  max_len_offset: int = 10
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"method={self.method!r} is invalid; allowed values: {METHODS}")
    for name in ("beam_size", "nbest", "max_len"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
    if self.method == "beam" and self.nbest > self.beam_size:
      raise ValueError(f"nbest={self.nbest} must not exceed beam_size={self.beam_size}")
    if self.method == "greedy" or (self.method == "beam" and self.beam_size == 1):
      if self.nbest != 1:
        raise ValueError(f"nbest={self.nbest}: greedy search (beam_size 1) has one hypothesis")
    if self.max_len_ratio <= 0:
      raise ValueError(f"max_len_ratio={self.max_len_ratio} must be > 0")
    decoding.length_penalty(1, self.alpha, self.length_penalty)  # validates the kind

  def output_length(self, source_length: int) -> int:
    """The static output length T for sources padded to `source_length` (EOS included)."""
    return min(self.max_len, math.ceil(self.max_len_ratio * max(source_length - 1, 0))
               + self.max_len_offset)


ModelConfigs = model_lib.ModelConfig | tuple[model_lib.ModelConfig, ...]


def ensemble_logprobs(logits_MNV: Sequence[jax.Array]) -> jax.Array:
  """log of the members' mean next-token probability [N, V]: the ensemble's distribution."""
  logp_MNV = jnp.stack([jax.nn.log_softmax(x.astype(jnp.float32), axis=-1) for x in logits_MNV])
  return jax.nn.logsumexp(logp_MNV, axis=0) - math.log(len(logits_MNV))


def search(params: Any, cfg: ModelConfigs, src_BS: jax.Array, opts: SearchOptions,
           max_length: int, rng: jax.Array | None = None,
           row_ids_B: jax.Array | None = None) -> decoding.Hypotheses:
  """Encodes `src_BS` (int32, trailing PAD, EOS-terminated) and searches; pure.

  Each sentence's output limit comes from its own length (`SearchOptions`), capped by the
  static `max_length`. Greedy and sampling scores are normalized like beam scores, so `score`
  means the same for every method. A tuple of configs (and the matching tuple of parameter
  trees) is an ensemble: every step uses `ensemble_logprobs` of the members' logits.
  """
  B = src_BS.shape[0]
  words_B = jnp.sum(src_BS != PAD_ID, axis=1) - 1  # without the EOS
  limit_B = jnp.minimum(
      jnp.ceil(opts.max_len_ratio * words_B).astype(jnp.int32) + opts.max_len_offset,
      min(opts.max_len, max_length))
  members = tuple(zip(cfg, params, strict=True)) if isinstance(cfg, tuple) else ((cfg, params),)
  # One Encoded and one DecoderCarry per member; the search reorders them all as one pytree.
  enc = tuple(model_lib.encode(p, c, src_BS) for c, p in members)

  def initial_carry(enc_rows):
    return tuple(e.initial_carry for e in enc_rows)

  def step_fn_over(enc_rows):
    def step_fn(carry, token_N):
      outs = [model_lib.decode_step(p, c, e, k, token_N)
              for (c, p), e, k in zip(members, enc_rows, carry, strict=True)]
      logits_NV = outs[0][0] if len(outs) == 1 else ensemble_logprobs([o[0] for o in outs])
      return logits_NV, tuple(o[1] for o in outs)
    return step_fn

  if opts.method == "beam" and opts.beam_size > 1:
    K = opts.beam_size
    tiled = decoding.tile_beams(enc, K)
    return decoding.beam_search(step_fn_over(tiled), initial_carry(tiled), B, K, max_length,
                                alpha=opts.alpha, length_penalty_kind=opts.length_penalty,
                                nbest=opts.nbest, limit_B=limit_B)
  if opts.method == "sample":
    R = opts.nbest
    tiled = decoding.tile_beams(enc, R)
    ids_B = jnp.arange(B) if row_ids_B is None else row_ids_B
    out = decoding.sample(step_fn_over(tiled), initial_carry(tiled), rng, B * R, max_length,
                          temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                          row_ids_B=(ids_B[:, None] * R + jnp.arange(R)).reshape(B * R),
                          limit_B=jnp.repeat(limit_B, R))
    out = jax.tree.map(lambda x: x.reshape(B, R, *x.shape[2:]), out)
  else:
    out = decoding.greedy(step_fn_over(enc), initial_carry(enc), B, max_length, limit_B=limit_B)
  score_BR = out.logprob_BR / decoding.length_penalty(out.length_BR, opts.alpha,
                                                      opts.length_penalty)
  order_BR = jnp.argsort(-score_BR, axis=1)  # best first (matters for several samples)
  return decoding.Hypotheses(*(jnp.take_along_axis(x, order_BR[..., None], axis=1)
                               if x.ndim == 3 else jnp.take_along_axis(x, order_BR, axis=1)
                               for x in (out.tokens_BRT, out.logprob_BR, score_BR,
                                         out.length_BR)))


_search_jit = jax.jit(search, static_argnames=("cfg", "opts", "max_length"))


@functools.partial(jax.jit, static_argnames="cfg")
def _attention(params, cfg, src_BS, tgt_in_BT):
  enc = model_lib.encode(params, cfg, src_BS)
  _, weights_BTS = model_lib.decode(params, cfg, enc, tgt_in_BT)
  return weights_BTS


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Hypothesis:
  text: str
  score: float  # logprob / length penalty: what the search ranks by
  logprob: float  # sum of token log-probabilities, EOS included
  ids: tuple[int, ...]  # output token ids, without EOS


@dataclasses.dataclass(frozen=True)
class Result:
  """One input's outputs, best first. An empty (whitespace-only) input has no hypotheses."""

  source: str
  hypotheses: tuple[Hypothesis, ...]
  truncated: bool = False  # the source was cut to max_source_len tokens
  attention: np.ndarray | None = None  # [output tokens + EOS, source tokens + EOS], best hyp.
  unknown: tuple[str, ...] = ()  # source tokens the training data never had (read as <unk>)

  @property
  def text(self) -> str:
    """The best output ('' for an empty input)."""
    return self.hypotheses[0].text if self.hypotheses else ""


# ----------------------------------------------------------------------------- the model


class Model:
  """A trained model with its tokenizers, ready to decode text.

  Attributes:
    config: the run's config (a plain dict, as saved in config.json), or {}.
    model_config: the frozen `ModelConfig`; for an ensemble (`ensemble`), one per member.
    params: the parameters (a pytree of arrays); for an ensemble, a tuple of them.
    source_tokenizer, target_tokenizer: the run's tokenizers.
    step: the checkpoint's training step (None when built in memory or for an ensemble); for
      averaged parameters, the latest of the steps averaged.
    averaged_steps: the checkpoint steps whose parameters were averaged
      (`load(..., average_last=N)`), else ().
  """

  def __init__(self, model_config: ModelConfigs, params: Any,
               source_tokenizer: tokenizers_lib.Tokenizer,
               target_tokenizer: tokenizers_lib.Tokenizer, *, config: dict | None = None,
               step: int | None = None, averaged_steps: Sequence[int] = ()):
    self.model_config, self.params = model_config, params
    self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
    self.config, self.step = config or {}, step
    self.averaged_steps = tuple(averaged_steps)

  @property
  def is_ensemble(self) -> bool:
    return isinstance(self.model_config, tuple)

  def _check_attention(self, what: str) -> None:
    if self.is_ensemble:
      raise ValueError(f"{what}: an ensemble has one attention per member; ask a member model")
    if self.model_config.attention == "none":
      raise ValueError(f"{what}: this model has no attention (attention='none')")

  def source_ids(self, text: str, max_source_len: int = 256) -> tuple[list[int], bool]:
    """(ids with EOS, truncated?): what the model reads for `text`, as in training."""
    if max_source_len < 2:
      raise ValueError(f"max_source_len={max_source_len} must be >= 2 (a token and EOS)")
    ids = self.source_tokenizer.encode(text)
    truncated = len(ids) + 1 > max_source_len
    return ids[:max_source_len - 1] + [EOS_ID], truncated

  def decode(self, texts: Sequence[str], *, beam_size: int = 5, nbest: int = 1,
             method: str = "beam", alpha: float = 0.6, length_penalty: str = "gnmt",
             max_len: int = 256, max_len_ratio: float = 2.0, max_len_offset: int = 10,
             max_source_len: int = 256, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, batch_size: int = 64,
             return_attention: bool = False) -> list[Result]:
    """Decodes `texts`; returns one `Result` per text, in input order.

    Texts are sorted by length and decoded `batch_size` at a time (padded to a multiple of 8
    tokens, so few shapes compile); the order is restored after. A source longer than
    `max_source_len` tokens (EOS included) is cut, with a warning, and marked `truncated`.
    Sampling draws sentence i's samples from `seed` and i, whatever shares its batch.
    See `SearchOptions` for the search arguments.
    """
    if isinstance(texts, str):
      raise TypeError("decode takes a list of texts; wrap a single text in a list")
    opts = SearchOptions(method=method, beam_size=beam_size, nbest=nbest, alpha=alpha,
                         length_penalty=length_penalty, max_len=max_len,
                         max_len_ratio=max_len_ratio, max_len_offset=max_len_offset,
                         temperature=temperature, top_k=top_k, top_p=top_p)
    if return_attention:
      self._check_attention("return_attention=True")
    encoded = [self.source_ids(t, max_source_len) if t.strip() else ([], False) for t in texts]
    truncated = [i for i, (_, cut) in enumerate(encoded) if cut]
    if truncated:
      logging.warning("%d of %d inputs are longer than max_source_len=%d tokens and were cut "
                      "(input indices %s)", len(truncated), len(texts), max_source_len,
                      truncated[:10])
    unknown = [tuple(self.source_tokenizer.unknown(t)) for t in texts]
    flagged = [i for i, u in enumerate(unknown) if u]
    if flagged:
      logging.warning("%d of %d inputs hold tokens the model never saw in training, read as "
                      "<unk> (input indices %s; see Result.unknown)", len(flagged), len(texts),
                      flagged[:10])
    todo = sorted((i for i, (ids, _) in enumerate(encoded) if ids),
                  key=lambda i: len(encoded[i][0]))
    hyps: dict[int, tuple[Hypothesis, ...]] = {}
    attention: dict[int, np.ndarray] = {}
    rng = jax.random.PRNGKey(seed)
    for start in range(0, len(todo), batch_size):
      rows = todo[start:start + batch_size]
      src_BS, row_ids = self._batch([encoded[i][0] for i in rows], rows, batch_size)
      out = jax.device_get(_search_jit(self.params, self.model_config, src_BS, opts,
                                       opts.output_length(src_BS.shape[1]), rng, row_ids))
      for r, i in enumerate(rows):
        hyps[i] = tuple(self._hypothesis(out, r, k) for k in range(out.score_BR.shape[1]))
      if return_attention:
        best = [hyps[i][0].ids for i in rows]
        weights = self._attention_weights(src_BS[:len(rows)], best)
        for r, i in enumerate(rows):
          attention[i] = weights[r, :len(best[r]) + 1, :len(encoded[i][0])]
    return [Result(text, hyps.get(i, ()), encoded[i][1], attention.get(i), unknown[i])
            for i, text in enumerate(texts)]

  def split(self, name: str) -> data_lib.TextPairs:
    """A split of the dataset this model was trained on (as the run's config names it)."""
    cfg = self.config["data"]
    return data_lib.open_dataset(cfg["dataset"], data_dir=cfg["data_dir"] or None,
                                 options=dict(cfg["options"])).split(name)

  @staticmethod
  def _batch(sources: list[list[int]], rows: list[int], batch_size: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Sources padded to a multiple of 8 tokens and to a power-of-two row count (<= batch_size)
    by repeating the first one: the compiled shapes stay few."""
    n = min(batch_size, 1 << (len(sources) - 1).bit_length())
    length = -(-max(map(len, sources)) // 8) * 8
    src_BS = np.full((n, length), PAD_ID, np.int32)
    for r in range(n):
      ids = sources[r] if r < len(sources) else sources[0]
      src_BS[r, :len(ids)] = ids
    row_ids = np.array(rows + [rows[0]] * (n - len(rows)), np.int32)
    return src_BS, row_ids

  def _hypothesis(self, out: decoding.Hypotheses, row: int, rank: int) -> Hypothesis:
    length = int(out.length_BR[row, rank])
    ids = [int(t) for t in out.tokens_BRT[row, rank, :length] if t != EOS_ID]
    return Hypothesis(self.target_tokenizer.decode(ids), float(out.score_BR[row, rank]),
                      float(out.logprob_BR[row, rank]), tuple(ids))

  def _attention_weights(self, src_BS: np.ndarray, outputs: list[Sequence[int]]) -> np.ndarray:
    """Teacher-forced attention weights [B, T, S] for outputs (ids without EOS)."""
    T = -(-(max(map(len, outputs)) + 1) // 8) * 8
    tgt_in_BT = np.full((len(outputs), T), PAD_ID, np.int32)
    for r, ids in enumerate(outputs):
      tgt_in_BT[r, 0] = BOS_ID
      tgt_in_BT[r, 1:len(ids) + 1] = ids
    return np.asarray(_attention(self.params, self.model_config, src_BS, tgt_in_BT))

  def attention(self, source: str, output: str | None = None, **decode_kw: Any
                ) -> tuple[np.ndarray, list[str], list[str]]:
    """`(weights [output tokens + EOS, source tokens + EOS], source pieces, output pieces)`
    for `output` (default: the model's own best output for `source`)."""
    self._check_attention("attention")
    src_ids, _ = self.source_ids(source, decode_kw.pop("max_source_len", 256))
    if output is None:
      out_ids = list(self.decode([source], **decode_kw)[0].hypotheses[0].ids)
    else:
      out_ids = self.target_tokenizer.encode(output)
    weights = self._attention_weights(np.array([src_ids], np.int32), [out_ids])
    return (weights[0, :len(out_ids) + 1, :len(src_ids)],
            self.source_tokenizer.pieces(src_ids), self.target_tokenizer.pieces(
                [*out_ids, EOS_ID]))

  def plot_attention(self, source: str, output: str | None = None, path: str = "attention.png",
                     **decode_kw: Any) -> str:
    """Writes a heatmap of the attention weights (source tokens across, output tokens down) to
    `path` (PNG); `output` defaults to the model's best output. Returns `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights, src_pieces, out_pieces = self.attention(source, output, **decode_kw)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(src_pieces), 1.0 + 0.4 * len(out_pieces)))
    image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src_pieces)), src_pieces, rotation=90 if any(
        len(p) > 2 for p in src_pieces) else 0)
    ax.set_yticks(range(len(out_pieces)), out_pieces)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    for side in ("source", "target"):
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
  model_config = model_lib.ModelConfig.from_dict({
      **config["model"], "src_vocab_size": src_tok.vocab_size,
      "tgt_vocab_size": tgt_tok.vocab_size})
  directory = os.path.join(workdir, "checkpoints")
  if average_last:
    if checkpoint != "best":
      raise ValueError(f"average_last={average_last} replaces checkpoint={checkpoint!r}; give "
                       "one or the other")
    steps, params = _average_last(directory, average_last)
    logging.info("loaded %s: the mean of steps %s", workdir, list(steps))
    return Model(model_config, params, src_tok, tgt_tok, config=config, step=steps[-1],
                 averaged_steps=steps)
  step, params = _restore_params(directory, checkpoint)
  logging.info("loaded %s step %d", workdir, step)
  return Model(model_config, params, src_tok, tgt_tok, config=config, step=step)


def average_params(trees: Sequence[Any], names: Sequence[str]) -> Any:
  """The elementwise mean of parameter trees of one architecture (summed in float32).

  Raises:
    ValueError: a tree's parameter names, shapes or dtypes differ from the first one's
      (checkpoints of different configs); the message names the tree and the parameter.
  """
  reference = {jax.tree_util.keystr(path): leaf
               for path, leaf in jax.tree_util.tree_flatten_with_path(trees[0])[0]}
  for tree, name in zip(trees[1:], names[1:], strict=True):
    leaves = {jax.tree_util.keystr(path): leaf
              for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
    if leaves.keys() != reference.keys():
      differ = sorted(leaves.keys() ^ reference.keys())
      raise ValueError(f"{name} and {names[0]} have different parameters ({', '.join(differ)}): "
                       "checkpoints of different configs cannot be averaged")
    for key, leaf in leaves.items():
      ref = reference[key]
      if (leaf.shape, leaf.dtype) != (ref.shape, ref.dtype):
        raise ValueError(f"parameter {key} is {leaf.dtype}{list(leaf.shape)} in {name} but "
                         f"{ref.dtype}{list(ref.shape)} in {names[0]}: checkpoints of different "
                         "configs cannot be averaged")
  return jax.tree.map(
      lambda *xs: (sum(x.astype(jnp.float32) for x in xs) / len(xs)).astype(xs[0].dtype),
      *trees)


def _average_last(directory: str, n: int) -> tuple[tuple[int, ...], Any]:
  if n < 1:
    raise ValueError(f"average_last={n} must be >= 1")
  by_step = _by_step(_managers(directory))
  if len(by_step) < n:
    raise ValueError(f"average_last={n}: {directory} keeps {len(by_step)} checkpoints (available: "
                     f"{sorted(by_step)}); ask for fewer, or train with more "
                     "train.keep_checkpoints")
  steps = tuple(sorted(by_step)[-n:])
  trees = [_restore_step(by_step[step], step) for step in steps]
  return steps, average_params(trees, [f"checkpoint step {step}" for step in steps])


def _managers(directory: str) -> dict[str, tuple[ocp.CheckpointManager, list[int]]]:
  """{'last' / 'best': (its manager, its steps)} for the kinds the run has saved."""
  steps = {}
  for kind in ("last", "best"):
    path = os.path.join(directory, kind)
    if os.path.isdir(path):
      manager = ocp.CheckpointManager(path, item_handlers={
          "state": ocp.StandardCheckpointHandler(), "loop": ocp.JsonCheckpointHandler()})
      steps[kind] = (manager, manager.all_steps())
  if not any(all_steps for _, all_steps in steps.values()):
    raise FileNotFoundError(f"no checkpoint in {directory}: the run saved none yet")
  return steps


def _by_step(kinds: dict[str, tuple[ocp.CheckpointManager, list[int]]]
             ) -> dict[int, ocp.CheckpointManager]:
  """{step: the manager that holds it} over all kinds ('last' first where both hold a step)."""
  by_step = {}
  for manager, all_steps in kinds.values():
    for step in all_steps:
      by_step.setdefault(step, manager)
  return by_step


def _restore_params(directory: str, which: str | int) -> tuple[int, Any]:
  steps = _managers(directory)
  by_step = _by_step(steps)
  available = sorted(by_step)
  if which == "best" and steps.get("best", (None, []))[1]:
    manager, step = steps["best"][0], max(steps["best"][1])
  elif which in ("best", "last"):
    if which == "best":
      logging.warning("%s has no best checkpoint (no validation yet); using the latest step",
                      directory)
    manager, step = steps["last"][0], max(steps["last"][1])
  else:
    try:
      step = int(which)
    except ValueError:
      raise ValueError(f"checkpoint={which!r} is invalid: use 'best', 'last' or a step number "
                       f"(available: {available})") from None
    if step not in by_step:
      raise ValueError(f"no checkpoint for step {step} in {directory}; available: {available}")
    manager = by_step[step]
  return step, _restore_step(manager, step)


def _restore_step(manager: ocp.CheckpointManager, step: int) -> Any:
  # Restore onto this process's first device, whatever mesh the run trained on.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        dict(manager.item_metadata(step).state))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  # A run with train.ema_decay > 0 evaluated and chose its best step with the moving average.
  state = restored.state
  return state["params"] if state.get("ema_params") is None else state["ema_params"]


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
  params, cfg = model.params, model.model_config

  def decode_fn(src_BS):
    return tuple(search(params, cfg, src_BS, opts, opts.max_len))

  b, s = jax.export.symbolic_shape("b, s")
  exported = jax.export.export(jax.jit(decode_fn))(jax.ShapeDtypeStruct((b, s), jnp.int32))
  tokenizers_lib.atomic_write(path, exported.serialize())
  return path
