"""s2s_jax: RNN encoder-decoder models in JAX/Flax.

  model = s2s_jax.load(workdir)          # a trained run: config, tokenizers, best checkpoint
  model.decode(["hello"], beam_size=5)   # -> [Result(text=..., hypotheses=...)]
  s2s_jax.ensemble([model, s2s_jax.load(other_workdir)])  # averages their probabilities
  s2s_jax.export(workdir, "model.exported")
  s2s_jax.enable_compilation_cache()     # later processes reuse compiled programs (on disk)
"""

from s2s_jax.losses import cross_entropy, mean_cross_entropy, token_accuracy
from s2s_jax.model import DecoderCarry, Encoded, ModelConfig, Seq2Seq
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID, UNK_ID

__all__ = [
    "BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID",
    "DecoderCarry", "Encoded", "ModelConfig", "Seq2Seq",
    "cross_entropy", "enable_compilation_cache", "ensemble", "export", "load",
    "mean_cross_entropy", "token_accuracy",
]
__version__ = "0.1.0"


def __getattr__(name: str):
  # Loading and exporting pull in Orbax and the tokenizers: imported on first use only.
  if name in ("load", "ensemble", "export"):
    from s2s_jax import inference
    return getattr(inference, name)
  if name == "enable_compilation_cache":
    from s2s_jax import compile_cache
    return compile_cache.enable
  raise AttributeError(f"module 's2s_jax' has no attribute {name!r}")
