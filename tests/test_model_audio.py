"""Speech input: a model whose source is waveforms (log-mel on device, a pyramidal encoder,
location-aware attention) keeps exact lengths, decodes step by step as teacher forcing does,
trains through the pure train step, and masks features with SpecAugment only in training."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from s2s_jax import BOS_ID, ModelConfig, Seq2Seq, optim, training
from s2s_jax import model as model_lib

CFG = ModelConfig(src_vocab_size=5, tgt_vocab_size=12, source="audio", num_mels=16,
                  embed_size=6, hidden_size=8, encoder_hidden_size=6, encoder_layers=3,
                  decoder_layers=1, encoder_reduce=2, attention="location", location_filters=3,
                  location_width=5, attention_size=6)
LENGTHS = [4000, 2500, 3300]  # samples at 16 kHz: 23, 14 and 19 frames
pytestmark = pytest.mark.slow  # each test compiles a model of its own


def _batch():
  rng = np.random.default_rng(0)
  audio = rng.integers(-4000, 4000, (3, 4000)).astype(np.int16)
  audio[1, 2500:] = 9999  # garbage past an utterance's end must not matter
  tgt_in = np.array([[BOS_ID, 5, 6, 7], [BOS_ID, 8, 9, 0], [BOS_ID, 10, 0, 0]], np.int32)
  tgt_out = np.array([[5, 6, 7, 2], [8, 9, 2, 0], [10, 2, 0, 0]], np.int32)
  return {"audio": audio, "audio_len": np.array(LENGTHS, np.int32), "tgt_in": tgt_in,
          "tgt_out": tgt_out}


@pytest.fixture(scope="module")
def params():
  batch = _batch()
  return Seq2Seq(CFG).init(jax.random.key(0), model_lib.batch_source(batch),
                           batch["tgt_in"])["params"]


def test_audio_model_has_no_source_embedding_and_a_pyramidal_encoder(params):
  assert "src_embedding" not in params
  assert params["encoder"]["layer_0"]["fw"]["W_i"].shape[0] == 16  # mel bins in
  assert params["encoder"]["layer_1"]["fw"]["W_i"].shape[0] == 2 * 12  # two stacked frames
  enc = model_lib.encode(params, CFG, model_lib.batch_source(_batch()))
  frames = [1 + (n - 400) // 160 for n in LENGTHS]
  top = [math.ceil(math.ceil(f / 2) / 2) for f in frames]  # two halvings, rounding up
  assert enc.mask_BS.sum(1).tolist() == top
  assert enc.memory_BSD.shape[1] == max(top)


def test_an_utterance_alone_and_padded_in_a_batch_gives_the_same_logits(params):
  batch = _batch()
  logits_b = Seq2Seq(CFG).apply({"params": params}, model_lib.batch_source(batch),
                                batch["tgt_in"])
  alone = (batch["audio"][1:2, :2500], batch["audio_len"][1:2])
  logits_1 = Seq2Seq(CFG).apply({"params": params}, alone, batch["tgt_in"][1:2, :3])
  np.testing.assert_allclose(logits_b[1, :3], logits_1[0], rtol=1e-5, atol=1e-5)


def test_step_by_step_decoding_equals_teacher_forcing(params):
  batch = _batch()
  enc = model_lib.encode(params, CFG, model_lib.batch_source(batch))
  forced, weights = model_lib.decode(params, CFG, enc, jnp.asarray(batch["tgt_in"]))
  carry = enc.initial_carry
  for t in range(batch["tgt_in"].shape[1]):
    logits, carry, w = model_lib.decode_step(params, CFG, enc, carry, batch["tgt_in"][:, t])
    np.testing.assert_allclose(logits, forced[:, t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w, weights[:, t], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(w)[~np.asarray(enc.mask_BS)], 0.0)


def test_train_step_on_audio_batches_lowers_the_loss():
  batch = _batch()
  opt = {"name": "adam", "clip_norm": 1.0, "accumulate_steps": 1}
  state = training.create_train_state(jax.random.key(1), Seq2Seq(CFG), optim.make_optimizer(opt),
                                      optax.constant_schedule(1e-2))
  step = jax.jit(training.train_step)
  losses = []
  for _ in range(30):
    state, m = step(state, batch, jax.random.key(2))
    losses.append(float(m["loss_sum"] / m["tokens"]))
  assert losses[-1] < 0.5 * losses[0]


def test_spec_augment_masks_only_while_training(params):
  cfg = ModelConfig(**{**CFG.to_dict(), "spec_augment": True})
  src = model_lib.batch_source(_batch())
  plain = model_lib.encode(params, CFG, src).memory_BSD
  np.testing.assert_array_equal(model_lib.encode(params, cfg, src).memory_BSD, plain)  # eval
  # With an rng (training) the features are masked (features.spec_augment: deterministic in it).
  assert not np.allclose(model_lib.encode(params, cfg, src, jax.random.key(3)).memory_BSD, plain)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(source="speech"), "ModelConfig.source='speech' is invalid"),
    (dict(share_embeddings=True, src_vocab_size=12), "needs a token source"),
    (dict(residual=True), "encoder_reduce=2 needs residual=False"),
])
def test_bad_audio_configs_are_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    ModelConfig(**{**CFG.to_dict(), **kwargs})
