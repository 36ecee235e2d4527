"""ModelConfig validation: a bad value raises ValueError naming the field and what is allowed."""

import pytest

from s2s_jax import ModelConfig

BASE = dict(src_vocab_size=20, tgt_vocab_size=30)

CASES = [
    (dict(src_vocab_size=4),
     "ModelConfig.src_vocab_size=4 is invalid; allowed values: an int >= 5"),
    (dict(tgt_vocab_size="30"), "ModelConfig.tgt_vocab_size='30' is invalid"),
    (dict(embed_size=0), "ModelConfig.embed_size=0 is invalid; allowed values: an int >= 1"),
    (dict(hidden_size=-3), "ModelConfig.hidden_size=-3 is invalid"),
    (dict(hidden_size=8.0), "ModelConfig.hidden_size=8.0 is invalid"),
    (dict(encoder_layers=0), "ModelConfig.encoder_layers=0 is invalid"),
    (dict(decoder_layers=True), "ModelConfig.decoder_layers=True is invalid"),
    (dict(scan_unroll=0), "ModelConfig.scan_unroll=0 is invalid"),
    (dict(encoder_hidden_size=0), "ModelConfig.encoder_hidden_size=0 is invalid; allowed values: "
                                  "an int >= 1 (or None)"),
    (dict(attention="bahdanau", attention_size=-1), "ModelConfig.attention_size=-1 is invalid"),
    (dict(cell="lstmm"), "ModelConfig.cell='lstmm' is invalid; allowed values: 'lstm', 'gru', "
                         "'rnn'"),
    (dict(bidirectional_merge="mean"), "ModelConfig.bidirectional_merge='mean' is invalid; "
                                       "allowed values: 'concat', 'sum'"),
    (dict(attention="dot"), "ModelConfig.attention='dot' is invalid; allowed values: 'none', "
                            "'bahdanau', 'luong'"),
    (dict(attention_score="concat"), "ModelConfig.attention_score='concat' is invalid; allowed "
                                     "values: 'dot', 'general'"),
    (dict(bridge="learned"), "ModelConfig.bridge='learned' is invalid; allowed values: 'auto', "
                             "'copy', 'project', 'zero'"),
    (dict(dtype="float64"), "ModelConfig.dtype='float64' is invalid; allowed values: 'float32', "
                            "'bfloat16', 'float16'"),
    (dict(param_dtype="float16"), "ModelConfig.param_dtype='float16' is invalid; allowed values: "
                                  "'float32', 'bfloat16'"),
    (dict(bidirectional=1), "ModelConfig.bidirectional=1 is invalid; allowed values: True, False"),
    (dict(residual="yes"), "ModelConfig.residual='yes' is invalid"),
    (dict(input_feeding=None), "ModelConfig.input_feeding=None is invalid"),
    (dict(tie_embeddings=0), "ModelConfig.tie_embeddings=0 is invalid"),
    (dict(share_embeddings="no"), "ModelConfig.share_embeddings='no' is invalid"),
    (dict(dropout=1.0), "ModelConfig.dropout=1.0 is invalid; allowed values: a float in [0, 1)"),
    (dict(dropout=-0.1), "ModelConfig.dropout=-0.1 is invalid"),
    (dict(dropout="0.1"), "ModelConfig.dropout='0.1' is invalid"),
    (dict(forget_bias="1"),
     "ModelConfig.forget_bias='1' is invalid; allowed values: a finite number"),
    (dict(forget_bias=float("nan")), "ModelConfig.forget_bias=nan is invalid"),
    (dict(dropout=float("nan")), "ModelConfig.dropout=nan is invalid"),
    (dict(attention="bahdanau", input_feeding=True),
     "ModelConfig.input_feeding=True needs attention='luong' (got attention='bahdanau')"),
    (dict(attention="none", input_feeding=True), "ModelConfig.input_feeding=True needs"),
    (dict(attention="luong", attention_size=32),
     "ModelConfig.attention_size is only used by attention='bahdanau'"),
    (dict(attention="luong", attention_score="dot"),  # bidirectional concat: 1024 != 512
     "ModelConfig.attention_score='dot' needs the encoder output size (1024"),
    (dict(bridge="copy"), "ModelConfig.bridge='copy' needs encoder_layers == decoder_layers"),
    (dict(bridge="copy", bidirectional_merge="sum", decoder_layers=3),
     "(got 2 and 3)"),
    (dict(share_embeddings=True), "ModelConfig.share_embeddings=True needs src_vocab_size == "
                                  "tgt_vocab_size (got 20 and 30)"),
]


@pytest.mark.parametrize("overrides,message", CASES, ids=[str(c[0]) for c in CASES])
def test_invalid_value_raises_with_field_and_allowed_values(overrides, message):
  with pytest.raises(ValueError) as info:
    ModelConfig(**{**BASE, **overrides})
  assert message in str(info.value)


def test_valid_combinations_are_accepted():
  ModelConfig(**BASE, attention="luong", attention_score="dot", bidirectional_merge="sum")
  ModelConfig(**BASE, attention="luong", attention_score="dot", bidirectional=True,
              encoder_hidden_size=256)  # 2 x 256 == 512
  ModelConfig(**BASE, bridge="copy", bidirectional=False)
  ModelConfig(**BASE, attention="bahdanau", attention_size=64, dropout=0.3, forget_bias=0)


def test_from_dict_rejects_unknown_fields_and_round_trips():
  cfg = ModelConfig(**BASE, cell="gru", dropout=0.2)
  assert ModelConfig.from_dict(cfg.to_dict()) == cfg
  with pytest.raises(ValueError, match="ModelConfig has no field\\(s\\) hiden_size"):
    ModelConfig.from_dict({**BASE, "hiden_size": 5})


def test_config_is_frozen():
  cfg = ModelConfig(**BASE)
  with pytest.raises(AttributeError):
    cfg.hidden_size = 3  # type: ignore[misc]
