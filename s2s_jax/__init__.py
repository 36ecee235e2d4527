"""s2s_jax: RNN encoder-decoder models in JAX/Flax."""

from s2s_jax.losses import cross_entropy, mean_cross_entropy, token_accuracy
from s2s_jax.model import DecoderCarry, Encoded, ModelConfig, Seq2Seq
from s2s_jax.special_ids import BOS_ID, EOS_ID, PAD_ID, UNK_ID

__all__ = [
    "BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID",
    "DecoderCarry", "Encoded", "ModelConfig", "Seq2Seq",
    "cross_entropy", "mean_cross_entropy", "token_accuracy",
]
__version__ = "0.1.0"
