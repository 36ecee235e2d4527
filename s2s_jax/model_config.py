"""`ModelConfig`: the frozen, validated hyperparameters of a `Seq2Seq` model, the sizes derived
from them, and the lengths its encoder gives an input (what decoding needs to batch inputs and
trim attention without knowing the front end or the pyramid).

Shape legend as in `s2s_jax.model`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from s2s_jax import attention as attn
from s2s_jax import features, rnn
from s2s_jax.special_ids import NUM_SPECIAL_IDS

BRIDGE_MODES = ("auto", "copy", "project", "zero")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
SOURCES = ("tokens", "audio")
PARAM_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyperparameters of a `Seq2Seq` model, validated on construction.

  Invalid values raise `ValueError` naming the field and what is allowed.
  """

  src_vocab_size: int
  tgt_vocab_size: int
  cell: str = "lstm"  # 'lstm', 'gru' or 'rnn' (Elman, tanh); encoder and decoder alike
  embed_size: int = 256  # E, source and target embeddings
  hidden_size: int = 512  # H, decoder units per layer
  encoder_hidden_size: int | None = None  # encoder units per layer and direction; None: hidden_size
  encoder_layers: int = 2
  decoder_layers: int = 2
  bidirectional: bool = True  # bidirectional encoder layers
  bidirectional_merge: str = "concat"  # 'concat' ([fw; bw], 2x units) or 'sum' (fw + bw)
  residual: bool = False  # residual connections from the second layer of each stack on
  dropout: float = 0.0  # on embeddings, between layers, and before the output projection
  # A name in s2s_jax.attention.TYPES: 'none', 'bahdanau' (additive), 'luong' (multiplicative)
  # or 'location' (additive + where the previous step attended; Chorowski et al. 2015, for
  # long acoustic inputs)
  attention: str = "luong"
  attention_score: str = "general"  # the variant of a type that has some: Luong 'dot', 'general'
  attention_size: int | None = None  # A for 'bahdanau' / 'location'; None: hidden_size
  location_filters: int = 10  # K convolution filters over the previous weights ('location')
  location_width: int = 31  # R, their (odd) width in source positions ('location')
  input_feeding: bool = False  # Luong input feeding: feed r_{t-1} to the next step
  bridge: str = "auto"  # 'auto', 'copy', 'project' or 'zero' (see the module docstring)
  tie_embeddings: bool = False  # output projection = target embedding^T (readout size becomes E)
  share_embeddings: bool = False  # one embedding table for source and target (same vocabulary)
  forget_bias: float = 1.0  # initial LSTM forget-gate bias
  dtype: str = "float32"  # compute dtype of matmuls; states, softmaxes and logits stay float32
  param_dtype: str = "float32"  # dtype the parameters are stored in
  scan_unroll: int = 1  # lax.scan unroll factor of the recurrent loops
  # Speech: source='audio' reads int16 waveforms with their lengths, `(audio_BN, num_samples_B)`,
  # instead of token ids; the encoder reads their log-mel features, computed on device
  # (s2s_jax.features). src_vocab_size is then unused.
  source: str = "tokens"  # 'tokens' or 'audio'
  num_mels: int = 80  # F, mel bins of the features (source='audio')
  sample_rate: int = 16000  # Hz of the waveforms (source='audio')
  spec_augment: bool = False  # SpecAugment masks on the features while training ('audio')
  encoder_reduce: int = 1  # pyramidal encoder (LAS): layers from the second on read this many
  # stacked frames of the layer below, so the memory has ceil(S / r ** (layers - 1)) steps
  # Joint CTC-attention (Kim, Hori & Watanabe 2017): a CTC output layer on the encoder's
  # outputs, trained with loss = ctc_weight * CTC + (1 - ctc_weight) * CE (0: no CTC head; 1: a
  # CTC-only model). Its blank is PAD_ID, so its outputs are the target vocabulary (s2s_jax.ctc).
  ctc_weight: float = 0.0
  ctc_upsample: int = 1  # CTC frames per memory step (> 1: room for targets longer than sources)
  # Copy attention (pointer-generator, See et al. 2017; s2s_jax.pointer): the output mixes the
  # softmax with the attention over the source tokens. Needs attention and a vocabulary shared
  # by source and target (data.shared_vocab).
  copy_attention: bool = False
  # The extended vocabulary (See et al. 2017): up to this many distinct source tokens outside
  # the vocabulary per sentence get output ids V, V + 1, ..., so copying emits them as
  # themselves (s2s_jax.data.extended_vocab); 0: such tokens are <unk> everywhere.
  copy_oov_slots: int = 0
  # Coverage (See et al. 2017; s2s_jax.coverage): each position's attention so far enters its
  # score, so the decoder can stop re-attending; train.coverage_loss_weight adds its loss.
  coverage: bool = False

  def __post_init__(self) -> None:
    # An audio source has no vocabulary: its src_vocab_size is unused (0 from a run's data).
    vocabularies = ("tgt_vocab_size",) if self.source == "audio" else ("src_vocab_size",
                                                                       "tgt_vocab_size")
    for name in vocabularies:
      _check_int(name, getattr(self, name), NUM_SPECIAL_IDS + 1,
                 f"ids 0-{NUM_SPECIAL_IDS - 1} are reserved for pad/bos/eos/unk")
    for name in ("embed_size", "hidden_size", "encoder_layers", "decoder_layers", "scan_unroll",
                 "location_filters", "location_width", "num_mels", "sample_rate",
                 "encoder_reduce", "ctc_upsample"):
      _check_int(name, getattr(self, name), 1)
    _check_int("copy_oov_slots", self.copy_oov_slots, 0)
    for name in ("encoder_hidden_size", "attention_size"):
      if getattr(self, name) is not None:
        _check_int(name, getattr(self, name), 1, "or None")
    for name, allowed in (("cell", rnn.CELL_TYPES), ("bidirectional_merge", rnn.MERGE_MODES),
                          ("attention", attn.names()), ("attention_score", attn.variants()),
                          ("bridge", BRIDGE_MODES), ("dtype", COMPUTE_DTYPES),
                          ("source", SOURCES), ("param_dtype", PARAM_DTYPES)):
      value = getattr(self, name)
      if value not in allowed:
        raise ValueError(f"ModelConfig.{name}={value!r} is invalid; allowed values: "
                         + ", ".join(repr(a) for a in allowed))
    for name in ("bidirectional", "residual", "input_feeding", "tie_embeddings",
                 "share_embeddings", "spec_augment", "copy_attention", "coverage"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r} is invalid; "
                         "allowed values: True, False")
    if (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
        or not 0.0 <= self.dropout < 1.0):
      raise ValueError(f"ModelConfig.dropout={self.dropout!r} is invalid; "
                       "allowed values: a float in [0, 1)")
    if (isinstance(self.ctc_weight, bool) or not isinstance(self.ctc_weight, (int, float))
        or not 0.0 <= self.ctc_weight <= 1.0):
      raise ValueError(f"ModelConfig.ctc_weight={self.ctc_weight!r} is invalid; "
                       "allowed values: a float in [0, 1] (0: no CTC head, 1: CTC only)")
    if (isinstance(self.forget_bias, bool) or not isinstance(self.forget_bias, (int, float))
        or not math.isfinite(self.forget_bias)):
      raise ValueError(f"ModelConfig.forget_bias={self.forget_bias!r} is invalid; "
                       "allowed values: a finite number")

    self._check_combinations()

  def _check_combinations(self) -> None:
    self._check_attention()
    if self.location_width % 2 == 0:
      raise ValueError(f"ModelConfig.location_width={self.location_width} must be odd (the "
                       "filters are centred on each source position)")
    if self.bridge == "copy" and not self.can_copy_states:
      raise ValueError(
          f"ModelConfig.bridge='copy' needs encoder_layers == decoder_layers (got "
          f"{self.encoder_layers} and {self.decoder_layers}) and an encoder final-state size "
          f"({self.memory_size}) equal to hidden_size ({self.hidden_size}); use 'auto' or "
          "'project'")
    if self.copy_oov_slots and not (self.copy_attention and self.ctc_weight == 0):
      raise ValueError(f"ModelConfig.copy_oov_slots={self.copy_oov_slots} extends the output "
                       "vocabulary of copy attention: it needs copy_attention=True and "
                       f"ctc_weight=0 (got {self.copy_attention} and {self.ctc_weight})")
    if self.coverage and self.attention == "none":
      raise ValueError("ModelConfig.coverage=True sums attention weights over the steps: it "
                       "needs attention (got 'none')")
    if self.copy_attention and (self.attention == "none" or self.source != "tokens"
                                or self.src_vocab_size != self.tgt_vocab_size):
      raise ValueError(
          "ModelConfig.copy_attention=True copies source tokens by their attention weights: it "
          f"needs attention (got {self.attention!r}), a token source (got {self.source!r}) and "
          f"one vocabulary for both sides (got sizes {self.src_vocab_size} and "
          f"{self.tgt_vocab_size}; set data.shared_vocab=True)")
    if self.ctc_upsample > 1 and not self.has_ctc:
      raise ValueError(f"ModelConfig.ctc_upsample={self.ctc_upsample} needs a CTC head: set "
                       "ctc_weight > 0")
    if self.source == "audio" and self.share_embeddings:
      raise ValueError("ModelConfig.share_embeddings=True needs a token source; "
                       "source='audio' has no source embedding")
    if self.encoder_reduce > 1 and self.residual:
      raise ValueError(f"ModelConfig.encoder_reduce={self.encoder_reduce} needs residual=False: "
                       "a pyramidal layer's input and output differ in length")
    if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
      raise ValueError(
          f"ModelConfig.share_embeddings=True needs src_vocab_size == tgt_vocab_size (got "
          f"{self.src_vocab_size} and {self.tgt_vocab_size})")

  def _check_attention(self) -> None:
    """The combinations the attention type's entry allows (`s2s_jax.attention`)."""
    kinds = attn.TYPES
    if attn.variants(self.attention) and self.attention_score not in attn.variants(
        self.attention):
      raise ValueError(f"ModelConfig.attention_score={self.attention_score!r} is invalid for "
                       f"attention={self.attention!r}; allowed values: "
                       + ", ".join(map(repr, attn.variants(self.attention))))
    kind, field = self.attention_type, self._attention_field()
    if self.input_feeding and not kind.input_feeding:
      feeding = dict.fromkeys(k.split("/")[0] for k, t in kinds.items() if t.input_feeding)
      raise ValueError(f"ModelConfig.input_feeding=True needs attention="
                       f"{' or '.join(map(repr, feeding))} (got attention={self.attention!r}); "
                       "attention from the previous state feeds its context already")
    if self.attention_size is not None and not kind.uses_attention_size:
      users = dict.fromkeys(k.split("/")[0] for k, t in kinds.items() if t.uses_attention_size)
      raise ValueError(f"ModelConfig.attention_size is only used by attention="
                       f"{' or '.join(map(repr, users))} (got attention={self.attention!r}); "
                       "leave it None")
    problem = kind.check(self.attention_sizes)
    if problem:
      raise ValueError(
          f"ModelConfig.{field} {problem}; the encoder output size is {self.memory_size} from "
          f"encoder_hidden_size={self.encoder_size}, bidirectional={self.bidirectional}, "
          f"bidirectional_merge={self.bidirectional_merge!r}")

  def _attention_field(self) -> str:
    """'attention_score=...' for a variant type, else 'attention=...' (for messages)."""
    if attn.variants(self.attention):
      return f"attention_score={self.attention_score!r}"
    return f"attention={self.attention!r}"

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
    """Builds a config from a mapping (e.g. a ConfigDict's `to_dict()`); unknown keys raise."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
      raise ValueError(f"ModelConfig has no field(s) {', '.join(unknown)}; "
                       f"fields: {', '.join(sorted(fields))}")
    return cls(**dict(values))

  @classmethod
  def for_vocabularies(cls, values: Mapping[str, Any], src_vocab_size: int,
                       tgt_vocab_size: int) -> ModelConfig:
    """A run's model config: its config's `model` section (without vocabulary sizes) plus the
    sizes of the vocabularies its tokenizers built. Training and loading both use this."""
    return cls.from_dict({**values, "src_vocab_size": src_vocab_size,
                          "tgt_vocab_size": tgt_vocab_size})

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  # Derived sizes.
  @property
  def feature_config(self) -> features.FeatureConfig:
    """The log-mel front end of source='audio'."""
    return features.FeatureConfig(sample_rate=self.sample_rate, num_mels=self.num_mels)

  @property
  def encoder_input_size(self) -> int:
    return self.num_mels if self.source == "audio" else self.embed_size

  @property
  def encoder_size(self) -> int:
    """Encoder units per layer and direction."""
    return self.encoder_hidden_size or self.hidden_size

  @property
  def memory_size(self) -> int:
    """D: encoder output features, also the size of a merged encoder final state."""
    return rnn.stack_output_size(self.encoder_size, self.bidirectional, self.bidirectional_merge)

  @property
  def readout_size(self) -> int:
    """R: size of the attentional/readout vector fed to the output projection."""
    return self.embed_size if self.tie_embeddings else self.hidden_size

  @property
  def output_size(self) -> int:
    """Ids a decoder step scores: the target vocabulary, plus the extended vocabulary's."""
    return self.tgt_vocab_size + self.copy_oov_slots

  @property
  def decoder_input_size(self) -> int:
    """The cell's input: embedding, the context where it enters the cell, the fed readout."""
    feed = self.readout_size if self.input_feeding else 0
    return self.embed_size + self.attention_type.context_input_size(self.attention_sizes) + feed

  @property
  def can_copy_states(self) -> bool:
    return self.encoder_layers == self.decoder_layers and self.memory_size == self.hidden_size

  @property
  def resolved_bridge(self) -> str:
    if self.bridge == "auto":
      return "copy" if self.can_copy_states else "project"
    return self.bridge

  @property
  def attention_type(self) -> attn.AttentionType:
    """The entry of `attention` (and `attention_score`) in `s2s_jax.attention.TYPES`."""
    return attn.lookup(self.attention, self.attention_score)

  @property
  def attention_sizes(self) -> attn.Sizes:
    return attn.Sizes(query=self.hidden_size, memory=self.memory_size,
                      attention=self.attention_size, location_filters=self.location_filters,
                      location_width=self.location_width)

  @property
  def recurrent_attention(self) -> bool:
    """Whether each decoder step's input depends on attention (so decoding must scan steps)."""
    return self.attention_type.recurrent(self.input_feeding)

  @property
  def has_ctc(self) -> bool:
    """Whether the model has a CTC head (trained with ctc_weight > 0)."""
    return self.ctc_weight > 0

  @property
  def compute_dtype(self) -> Any:
    return jnp.dtype(self.dtype)

  # Lengths: what the encoder makes of an input, for batching and attention outside the model.
  def source_steps(self, size: Any) -> Any:
    """Encoder input steps of sources of `size` (int or int array): tokens (EOS included) for
    a token source, feature frames for `size` audio samples (0 when shorter than a frame)."""
    if self.source == "audio":
      return features.num_frames(size, self.feature_config)
    return size

  def source_size(self, steps: int) -> int:
    """The smallest source size that holds `steps` input steps (inverse of `source_steps`):
    tokens, or the samples of `steps` frames."""
    if self.source == "audio":
      fc = self.feature_config
      return (steps - 1) * fc.hop_length + fc.frame_length if steps else 0
    return steps

  def memory_steps(self, steps: Any) -> Any:
    """Encoder output (memory) steps for `steps` input steps: the pyramid's reductions."""
    return rnn.reduced_lengths(steps, self.encoder_reduce, self.encoder_layers - 1)

  @property
  def memory_step_seconds(self) -> float:
    """Seconds of audio per memory step (source='audio')."""
    fc = self.feature_config
    return fc.hop_length * self.encoder_reduce ** (self.encoder_layers - 1) / fc.sample_rate


def _check_int(name: str, value: Any, minimum: int, note: str = "") -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    extra = f" ({note})" if note else ""
    raise ValueError(f"ModelConfig.{name}={value!r} is invalid; allowed values: an int >= "
                     f"{minimum}{extra}")
