"""Translates a Model Garden experiment configuration (a dict or YAML text) into this project's dataclasses.

Model Garden configures a run with a tree of hyperparams configs (`ExperimentConfig` with `task`, `trainer`
and `runtime`), usually written as YAML and read with `exp_factory`. Here a run is configured by gin
and small dataclasses. `experiment_config(yaml_or_dict)` reads the Model Garden shape and returns our
`ExperimentConfig`:

    from research.tasks import model_garden_config
    config = model_garden_config.experiment_config(open("bert_pretrain.yaml").read(), task="masked_lm")
    task = masked_lm.MaskedLMTask(config.task)

What maps to what:
  * `task.model.encoder` (`type: bert`, `bert: {...}`) -> a `BertEncoder` built with Model Garden's meaning
    of each field (`dropout_rate`, `hidden_activation`, `max_position_embeddings`, `initializer_range`,
    `embedding_size`, ...); `task.model.cls_heads` -> `ClassificationHead`s; the model field of our task
    configs is a `ModelBuilder`: called, it builds the model; read, it answers Model Garden's reads of
    the model config (`config.model.encoder.get().vocab_size`, `config.model.num_classes`), its
    defaults filled in.
  * masked-LM `train_data` / `validation_data` (`BertPretrainDataConfig`) -> `PretrainDataConfig`:
    `seq_length` -> `seq_len`, `max_predictions_per_seq`, `global_batch_size`, `is_training`,
    `use_next_sentence_label`, `seed`; the vocabulary size comes from the encoder. Our records hold
    unmasked ids and are masked in the input pipeline: records written for Model Garden (pre-masked) must
    be rebuilt with `research.data.build_pretraining_data`.
  * sentence-prediction data -> `ClassificationDataConfig`: Model Garden's TFRecords of tokenized examples
    (`file_type='tfrecord'`, `label_field`, `label_type`, `include_example_id`), or our TSV input when the
    dict has `spm_model` (a key Model Garden does not have: the sentencepiece model that tokenizes it).
  * `trainer.optimizer_config` (`optimizer`, `learning_rate`, `warmup`) -> `OptimizerConfig`; the
    trainer's schedule fields keep their names; `runtime.mixed_precision_dtype` / `loss_scale` ->
    `RuntimeConfig`.
Values we cannot honour (another encoder type, a stepwise learning rate, a warmup that does not start at 0)
raise ValueError naming the key; keys we do not know raise too, so that nothing is silently dropped. Keys
that only say where or how the job runs (`runtime.distribution_strategy`, `tpu`, ...) are logged with the
flag of `research.main` that does the same.
"""
import keras
from absl import logging

from research import modeling
from research.core import config_definitions, optimization
from research.tasks import masked_lm, sentence_prediction

TASKS = ("masked_lm", "sentence_prediction")
# Model Garden keys that say where the job runs: research.main takes them as flags.
_RUNTIME_FLAGS = {"distribution_strategy": "--distribution_strategy", "tpu": "--tpu_address",
                  "worker_hosts": "TF_CONFIG", "task_index": "TF_CONFIG"}
# Model Garden keys with no effect here as long as they hold these (Model Garden's default) values.
_INERT = {
    "runtime": {"enable_xla": False, "num_gpus": 0, "all_reduce_alg": None, "num_packs": 1, "gpu_thread_mode": None,
                "per_gpu_thread_count": 0, "dataset_num_private_threads": None, "batchnorm_spatial_persistent": False,
                "tpu_enable_xla_dynamic_padder": None, "num_cores_per_replica": 1, "default_shard_dim": -1,
                "use_tpu_mp_strategy": False, "run_eagerly": False},
    "trainer": {"allow_tpu_summary": False, "continuous_eval_timeout": 3600, "recovery_begin_steps": 0,
                "validation_summary_subdir": "validation", "preemption_on_demand_checkpoint": True,
                "eval_tf_function": True, "train_tf_function": True, "eval_tf_while_loop": False,
                "train_tf_while_loop": True},
    "data": {"tfds_name": "", "tfds_split": "", "drop_remainder": True, "cache": False, "cycle_length": None,
             "block_length": 1, "ram_budget": None, "deterministic": None, "sharding": True,
             "enable_tf_data_service": False, "tf_data_service_address": None, "tf_data_service_job_name": None,
             "tfds_data_dir": "", "tfds_as_supervised": False, "tfds_skip_decoding_feature": "",
             "enable_shared_tf_data_service_between_parallel_trainers": False,
             "apply_tf_data_service_before_batching": False, "trainer_id": None, "prefetch_buffer_size": None,
             "autotune_algorithm": None, "file_type": "tfrecord", "use_position_id": False, "use_v2_feature_names": False,
             "label_field": "label_ids", "label_name": None, "include_example_id": False, "label_type": None,
             "outputs_as_dict": False},
    "task": {"name": None, "differential_privacy_config": None, "allow_image_summary": False, "hub_module_url": ""},
    "encoder": {"output_range": None, "return_all_encoder_outputs": False, "return_attention_scores": False,
                "return_word_embeddings": False, "norm_first": False},
}


def _unknown(section: str, values: dict, known) -> None:
    """Raises ValueError for keys neither translated nor inert (at their Model Garden default)."""
    inert = _INERT.get(section, {})
    bad = sorted(key for key, value in values.items()
                 if key not in known and not (key in inert and value == inert[key]))
    if bad:
        raise ValueError(f"Model Garden {section} keys {bad} have no translation here (values "
                         f"{[values[k] for k in bad]}); remove them or set them to Model Garden's default")


def _one_of(section: str, value: dict) -> tuple[str, dict]:
    """A Model Garden one-of config ({'type': t, t: {...}}) -> (t, its fields)."""
    value = dict(value or {})
    kind = value.pop("type", None)
    if kind is None:
        raise ValueError(f"Model Garden {section} has no 'type': {value!r}")
    return kind, dict(value.get(kind) or {})


# Model Garden's BertEncoderConfig defaults, for the fields translated here.
BERT_ENCODER_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_layers": 12, "num_attention_heads": 12,
                         "hidden_activation": "gelu", "intermediate_size": 3072, "dropout_rate": 0.1,
                         "attention_dropout_rate": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
                         "initializer_range": 0.02, "embedding_size": None}


class ConfigView:
    """Read-only attribute access to a Model Garden config dict (nested dicts are views too); a one-of
    config (`{'type': t, t: {...}}`) answers `.get()` with the chosen config, as Model Garden's OneOfConfig."""

    def __init__(self, values: dict, defaults: dict | None = None):
        object.__setattr__(self, "_values", {**(defaults or {}), **values})

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name not in values:
            raise AttributeError(f"Model Garden config has no field {name!r} here; it has {sorted(values)}")
        value = values[name]
        return ConfigView(value) if isinstance(value, dict) else value

    def __setattr__(self, name, value):
        raise AttributeError(f"a translated Model Garden config is read-only (setting {name!r}): translate the "
                             "changed Model Garden config again")

    def get(self):
        """The chosen config of a one-of config, with Model Garden's defaults for a 'bert' encoder."""
        values = object.__getattribute__(self, "_values")
        if "type" not in values:
            raise AttributeError(f"get() reads a Model Garden one-of config ({{'type': ...}}), not {sorted(values)}")
        chosen = dict(values.get(values["type"]) or {})
        return ConfigView(chosen, BERT_ENCODER_DEFAULTS if values["type"] == "bert" else None)

    def as_dict(self) -> dict:
        return dict(object.__getattribute__(self, "_values"))


class ModelBuilder(ConfigView):
    """A task config's `model`: calling it builds the model from the Model Garden model config it reads as."""

    def __init__(self, build, model: dict):
        super().__init__(model)
        object.__setattr__(self, "_build", build)

    def __call__(self):
        return object.__getattribute__(self, "_build")(self.as_dict())


def encoder_kwargs(encoder: dict) -> dict:
    """Model Garden `EncoderConfig` (`{'type': 'bert', 'bert': {...}}`) -> `BertEncoder` keyword arguments."""
    kind, fields = _one_of("task.model.encoder", encoder)
    if kind != "bert":
        raise ValueError(f"Model Garden encoder type {kind!r} has no counterpart here (only 'bert')")
    known = {"vocab_size", "hidden_size", "num_layers", "num_attention_heads", "hidden_activation",
             "intermediate_size", "dropout_rate", "attention_dropout_rate", "max_position_embeddings",
             "type_vocab_size", "initializer_range", "embedding_size"}
    _unknown("encoder", fields, known)
    fields = {**BERT_ENCODER_DEFAULTS, **fields}
    kwargs = dict(vocab_size=fields["vocab_size"], hidden_size=fields["hidden_size"], num_layers=fields["num_layers"],
                  num_attention_heads=fields["num_attention_heads"], inner_dim=fields["intermediate_size"],
                  inner_activation=fields["hidden_activation"], output_dropout=fields["dropout_rate"],
                  attention_dropout=fields["attention_dropout_rate"],
                  max_sequence_length=fields["max_position_embeddings"], type_vocab_size=fields["type_vocab_size"],
                  initializer=keras.initializers.TruncatedNormal(stddev=fields["initializer_range"]),
                  embedding_width=fields["embedding_size"])
    return kwargs


def build_encoder(encoder: dict) -> modeling.BertEncoder:
    """Builds the BertEncoder of a Model Garden `EncoderConfig` dict (as `encoders.build_encoder`)."""
    return modeling.BertEncoder(**encoder_kwargs(encoder))


def build_pretrainer(model: dict) -> modeling.BertPretrainer:
    """Builds a BertPretrainer from a Model Garden `PretrainerConfig` dict (`encoder`, `cls_heads`)."""
    _unknown("task.model", model, {"encoder", "cls_heads", "mlm_activation", "mlm_initializer_range"})
    encoder = build_encoder(model.get("encoder") or {"type": "bert"})
    _, fields = _one_of("task.model.encoder", model.get("encoder") or {"type": "bert"})
    stddev = model.get("mlm_initializer_range", fields.get("initializer_range", 0.02))
    heads = [modeling.ClassificationHead(**dict(head)) for head in model.get("cls_heads") or []]
    return modeling.BertPretrainer(encoder_network=encoder, classification_heads=heads,
                                   mlm_activation=model.get("mlm_activation", fields.get("hidden_activation", "gelu")),
                                   mlm_initializer=keras.initializers.TruncatedNormal(stddev=stddev))


def build_classifier(model: dict) -> modeling.BertClassifier:
    """Builds a BertClassifier from a Model Garden sentence-prediction `ModelConfig` dict."""
    _unknown("task.model", model, {"encoder", "num_classes", "use_encoder_pooler"})
    encoder = model.get("encoder") or {"type": "bert"}
    _, fields = _one_of("task.model.encoder", encoder)
    return modeling.BertClassifier(
        build_encoder(encoder), num_classes=model["num_classes"],
        initializer=keras.initializers.TruncatedNormal(stddev=fields.get("initializer_range", 0.02)),
        use_encoder_pooler=model.get("use_encoder_pooler", False))


def pretrain_data_config(data: dict | None, vocab_size: int) -> masked_lm.PretrainDataConfig | None:
    """Model Garden `BertPretrainDataConfig` dict -> PretrainDataConfig (None stays None)."""
    if data is None:
        return None
    known = {"input_path", "global_batch_size", "is_training", "seq_length", "max_predictions_per_seq",
             "use_next_sentence_label", "seed", "shuffle_buffer_size"}
    _unknown("data", data, known)
    return masked_lm.PretrainDataConfig(
        input_path=_path(data.get("input_path", "")), global_batch_size=data.get("global_batch_size", 512),
        is_training=data.get("is_training", True), seq_len=data.get("seq_length", 512),
        max_predictions_per_seq=data.get("max_predictions_per_seq", 76), vocab_size=vocab_size,
        use_next_sentence_label=data.get("use_next_sentence_label", True), seed=data.get("seed") or 0,
        shuffle_buffer_size=data.get("shuffle_buffer_size", 100))


def classification_data_config(data: dict | None) -> sentence_prediction.ClassificationDataConfig | None:
    """Model Garden `SentencePredictionDataConfig` dict -> ClassificationDataConfig (one already translated
    passes through).

    Without our `spm_model` key the data is Model Garden's: TFRecords of tokenized examples
    (`file_type='tfrecord'`, its default), read as there with `label_field`, `label_type` and
    `include_example_id`, padded to `seq_length` (pad_to='max'). With `spm_model` it is our TSV.
    `drop_remainder` is honoured as far as it can matter here: training data repeats forever (no partial
    batch either way) and evaluation data keeps its last partial batch, so only drop_remainder=False is
    accepted for evaluation data (Model Garden's default True would drop it).
    """
    if data is None or isinstance(data, sentence_prediction.ClassificationDataConfig):
        return data
    data = dict(data)
    known = {"input_path", "global_batch_size", "is_training", "seq_length", "seed", "spm_model", "file_type",
             "label_field", "label_type", "include_example_id", "drop_remainder"}
    _unknown("data", data, known)
    is_training = data.get("is_training", True)
    if not is_training and data.get("drop_remainder", True):
        raise ValueError("Model Garden data drop_remainder=True for evaluation data (is_training=False) has no "
                         "counterpart here: evaluation keeps the last partial batch; set drop_remainder=False")
    fields = dict(input_path=_path(data.get("input_path", "")), global_batch_size=data.get("global_batch_size", 32),
                  is_training=is_training, seq_len=data.get("seq_length", 128), seed=data.get("seed") or 0,
                  label_type=data.get("label_type"))
    file_type = data.get("file_type", "tsv" if "spm_model" in data else "tfrecord")
    if file_type == "tsv":
        fields["spm_model"] = data.get("spm_model", "")
    elif file_type == "tfrecord":
        if data.get("spm_model"):
            raise ValueError("Model Garden data file_type='tfrecord' holds tokenized records: drop spm_model (it "
                             "tokenizes our TSV input)")
        fields.update(file_type="tfrecord", pad_to="max", label_field=data.get("label_field", "label_ids"),
                      include_example_id=data.get("include_example_id", False))
    else:
        raise ValueError(f"Model Garden data file_type {file_type!r} has no counterpart here for sentence prediction: "
                         "use 'tfrecord' (Model Garden's records) or our TSV with spm_model")
    return sentence_prediction.ClassificationDataConfig(**fields)


def _path(input_path) -> str:
    if isinstance(input_path, (list, tuple)):
        return ",".join(input_path)
    return input_path


def masked_lm_config(task: dict) -> masked_lm.MaskedLMConfig:
    """Model Garden `MaskedLMConfig` dict -> MaskedLMConfig."""
    known = {"model", "train_data", "validation_data", "init_checkpoint", "scale_loss"}
    _unknown("task", task, known)
    model = dict(task.get("model") or {})
    model.setdefault("cls_heads", [])
    vocab_size = encoder_kwargs(model.get("encoder") or {"type": "bert"})["vocab_size"]
    return masked_lm.MaskedLMConfig(
        model=ModelBuilder(build_pretrainer, model),
        train_data=pretrain_data_config(task.get("train_data"), vocab_size),
        validation_data=pretrain_data_config(task.get("validation_data"), vocab_size),
        init_checkpoint=task.get("init_checkpoint", ""), scale_loss=task.get("scale_loss", False))


def sentence_prediction_config(task: dict) -> sentence_prediction.SentencePredictionConfig:
    """Model Garden `SentencePredictionConfig` dict -> SentencePredictionConfig."""
    known = {"model", "train_data", "validation_data", "init_checkpoint", "init_cls_pooler", "metric_type"}
    _unknown("task", task, known)
    model = dict(task.get("model") or {})
    if not model.get("num_classes"):
        raise ValueError("Model Garden task.model.num_classes must be set (>= 1) for sentence prediction")
    return sentence_prediction.SentencePredictionConfig(
        model=ModelBuilder(build_classifier, model), num_classes=model["num_classes"],
        train_data=classification_data_config(task.get("train_data")),
        validation_data=classification_data_config(task.get("validation_data")),
        init_checkpoint=task.get("init_checkpoint", ""), init_cls_pooler=task.get("init_cls_pooler", False),
        metric_type=task.get("metric_type", "accuracy"))


def optimizer_config(optimization_config: dict | None) -> optimization.OptimizerConfig:
    """Model Garden `OptimizationConfig` dict (`optimizer`, `learning_rate`, `warmup`) -> OptimizerConfig.

    The learning rate is Model Garden's schedule: 'constant', 'polynomial' or 'cosine' decay counted from
    step 0, after a 'linear' (from 0) or 'polynomial' (power 1) warmup.
    """
    optimization_dict = dict(optimization_config or {})
    _unknown("trainer.optimizer_config", optimization_dict, {"optimizer", "learning_rate", "warmup", "ema"})
    if optimization_dict.get("ema"):
        raise ValueError("Model Garden trainer.optimizer_config.ema (weight averaging) has no counterpart here")
    kind, opt = _one_of("trainer.optimizer_config.optimizer", optimization_dict.get("optimizer") or {"type": "sgd"})
    fields = {}
    if kind == "sgd":
        fields = dict(type="sgd", momentum=opt.get("momentum", 0.0), weight_decay_rate=0.0,
                      global_clipnorm=opt.get("global_clipnorm"))
        _unknown("trainer.optimizer_config.optimizer.sgd", opt, {"momentum", "global_clipnorm", "name"})
    elif kind in ("adamw", "lamb"):
        allowed = {"beta_1", "beta_2", "epsilon", "weight_decay_rate", "exclude_from_weight_decay", "name",
                   "gradient_clip_norm", "global_clipnorm"}
        _unknown(f"trainer.optimizer_config.optimizer.{kind}", opt, allowed)
        clip = opt.get("gradient_clip_norm", 1.0 if kind == "adamw" else None) or opt.get("global_clipnorm")
        fields = dict(type=kind, beta_1=opt.get("beta_1", 0.9), beta_2=opt.get("beta_2", 0.999),
                      epsilon=opt.get("epsilon", 1e-7 if kind == "adamw" else 1e-6),
                      weight_decay_rate=opt.get("weight_decay_rate", 0.0),
                      exclude_from_weight_decay=tuple(opt.get("exclude_from_weight_decay") or ()),
                      global_clipnorm=clip or None)
    else:
        raise ValueError(f"Model Garden optimizer type {kind!r} has no counterpart here: use 'sgd', 'adamw' or 'lamb'")
    kind, lr = _one_of("trainer.optimizer_config.learning_rate",
                       optimization_dict.get("learning_rate") or {"type": "constant"})
    if kind == "constant":
        fields.update(decay="constant", learning_rate=lr.get("learning_rate", 0.1))
    elif kind == "polynomial":
        fields.update(decay="polynomial", learning_rate=lr["initial_learning_rate"], decay_steps=lr["decay_steps"],
                      end_learning_rate=lr.get("end_learning_rate", 0.0001), power=lr.get("power", 1.0))
        if lr.get("cycle") or lr.get("offset"):
            raise ValueError("Model Garden learning_rate.polynomial cycle/offset have no counterpart here")
    elif kind == "cosine":
        fields.update(decay="cosine", learning_rate=lr["initial_learning_rate"], decay_steps=lr["decay_steps"],
                      end_learning_rate=lr.get("alpha", 0.0) * lr["initial_learning_rate"])
        if lr.get("offset"):
            raise ValueError("Model Garden learning_rate.cosine offset has no counterpart here")
    else:
        raise ValueError(f"Model Garden learning_rate type {kind!r} has no counterpart here: use 'constant', "
                         "'polynomial' or 'cosine'")
    if optimization_dict.get("warmup"):
        kind, warmup = _one_of("trainer.optimizer_config.warmup", optimization_dict["warmup"])
        if (kind == "linear" and warmup.get("warmup_learning_rate", 0)) or (
                kind == "polynomial" and warmup.get("power", 1) != 1) or kind not in ("linear", "polynomial"):
            raise ValueError(f"Model Garden warmup {kind!r} {warmup!r}: only a linear warmup from 0 has a "
                             "counterpart here")
        fields["warmup_steps"] = warmup.get("warmup_steps") or 0
    return optimization.OptimizerConfig(**fields)


def trainer_config(trainer: dict | None) -> config_definitions.TrainerConfig:
    """Model Garden `TrainerConfig` dict -> TrainerConfig (same field names, plus the loop switches)."""
    trainer = dict(trainer or {})
    same = ("train_steps", "steps_per_loop", "checkpoint_interval", "summary_interval", "validation_interval",
            "validation_steps", "max_to_keep", "best_checkpoint_export_subdir", "best_checkpoint_eval_metric",
            "best_checkpoint_metric_comp", "loss_upper_bound", "recovery_max_trials", "train_tf_while_loop",
            "eval_tf_while_loop", "train_tf_function", "eval_tf_function")
    _unknown("trainer", trainer, set(same) | {"optimizer_config"})
    fields = {name: trainer[name] for name in same if name in trainer}
    fields["optimizer_config"] = optimizer_config(trainer.get("optimizer_config"))
    return config_definitions.TrainerConfig(**fields)


def runtime_config(runtime: dict | None) -> optimization.RuntimeConfig:
    """Model Garden `RuntimeConfig` dict -> RuntimeConfig; placement keys are logged with our flag."""
    runtime = dict(runtime or {})
    for key, flag in _RUNTIME_FLAGS.items():
        if runtime.get(key):
            logging.info("Model Garden runtime.%s=%r: pass it to research.main as %s", key, runtime[key], flag)
    _unknown("runtime", runtime, {"mixed_precision_dtype", "loss_scale", *_RUNTIME_FLAGS})
    return optimization.RuntimeConfig(mixed_precision_dtype=runtime.get("mixed_precision_dtype") or "float32",
                                      loss_scale=runtime.get("loss_scale"))


def experiment_config(config, task: str | None = None) -> config_definitions.ExperimentConfig:
    """A Model Garden `ExperimentConfig` (a dict, or YAML text) -> our ExperimentConfig.

    Args:
      config: the Model Garden experiment: a dict with `task`, `trainer`, `runtime` (each optional but
        the task), or the text of a Model Garden YAML file.
      task: 'masked_lm' or 'sentence_prediction'; None decides from the task's model (`num_classes`
        means sentence prediction).

    Returns:
      An ExperimentConfig whose `task` is a MaskedLMConfig or SentencePredictionConfig.

    Raises:
      ValueError: a key has no translation, or a value cannot be honoured; the message names it.
    """
    if isinstance(config, str):
        try:
            import yaml  # pylint: disable=import-outside-toplevel  (only YAML text needs it)
        except ImportError:
            raise ImportError("experiment_config of YAML text needs PyYAML: pip install 'research[yaml]' "
                              "(or pass the parsed dict)") from None
        config = yaml.safe_load(config)
    if not isinstance(config, dict) or not isinstance(config.get("task"), dict):
        raise ValueError(f"A Model Garden experiment needs a 'task' mapping, got {config!r:.200}")
    _unknown("experiment", config, {"task", "trainer", "runtime"})
    task_dict = config["task"]
    if task is None:
        task = "sentence_prediction" if "num_classes" in (task_dict.get("model") or {}) else "masked_lm"
    if task not in TASKS:
        raise ValueError(f"experiment_config: task must be one of {TASKS}, got {task!r}")
    translate = masked_lm_config if task == "masked_lm" else sentence_prediction_config
    return config_definitions.ExperimentConfig(task=translate(task_dict), trainer=trainer_config(config.get("trainer")),
                                               runtime=runtime_config(config.get("runtime")))
