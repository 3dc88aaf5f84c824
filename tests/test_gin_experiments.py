"""Every gin experiment parses and builds (a dry run on one batch) with tiny overrides; bad gin fails early."""
import gin
import pytest

from research import main
from research.core import launch

from tasks.task_helpers import TINY_ENCODER_BINDINGS as TINY_ENCODER
from tasks.task_helpers import write_pretraining_records


@pytest.fixture(autouse=True)
def fresh_gin():
    gin.clear_config(clear_constants=True)
    yield
    gin.clear_config(clear_constants=True)


def dry_run(gin_file, params):
    main.parse_gin([f"gin/experiments/{gin_file}"], params)
    return gin.get_configurable(launch.launch)(dry_run=True)


@pytest.mark.slow
def test_demo_pretrain_builds(tmp_path):
    cache = f"demo_data.demo_pretraining_records.cache_dir = '{tmp_path}'"
    result = dry_run("demo_pretrain.gin", TINY_ENCODER + [cache, f"MODEL_DIR = '{tmp_path}/run'"])
    assert type(result.model).__name__ == "BertPretrainer"


@pytest.mark.slow
def test_demo_finetune_builds(tmp_path):
    params = TINY_ENCODER + [f"demo_data.demo_spm_model.cache_dir = '{tmp_path}'", f"MODEL_DIR = '{tmp_path}/run'",
                             "INIT_CHECKPOINT = ''"]  # the demo's pretraining has not run here
    result = dry_run("demo_finetune.gin", params)
    assert type(result.model).__name__ == "BertClassifier"


def test_bert_base_pretrain_builds_with_tiny_overrides(tmp_path):
    records = write_pretraining_records(tmp_path / "records")
    params = TINY_ENCODER + [f"TRAIN_DATA = '{records}'", f"EVAL_DATA = '{records}'", "VOCAB_SIZE = 60",
                             "SEQ_LEN = 16", "GLOBAL_BATCH_SIZE = 4", "EVAL_BATCH_SIZE = 4",
                             "MAX_PREDICTIONS_PER_SEQ = 4", f"MODEL_DIR = '{tmp_path}/run'"]
    result = dry_run("bert_base_pretrain.gin", params)
    assert result.model.encoder.get_embedding_table().shape == (60, 16)
    assert result.model.masked_positions_only  # bound in gin/tasks/masked_lm.gin


def test_missing_required_value_is_named():
    with pytest.raises(ValueError, match=r"TRAIN_DATA/macro\.value set to `%gin\.REQUIRED` but not subsequently "
                                         r"overridden"):
        dry_run("bert_base_pretrain.gin", TINY_ENCODER)


def test_malformed_gin_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("from __gin__ import dynamic_registration\nfrom research import modeling\n\n"
                   "modeling.BertEncoder.hidden_size = = 3\n")
    with pytest.raises(SyntaxError) as error:
        main.parse_gin([str(bad)], [])
    assert "bad.gin" in str(error.value) and error.value.lineno == 4


def test_unknown_configurable_or_parameter_is_named(tmp_path):
    records = write_pretraining_records(tmp_path / "records")
    params = [f"TRAIN_DATA = '{records}'", f"EVAL_DATA = '{records}'", f"MODEL_DIR = '{tmp_path}/run'",
              "optimization.OptimizerConfig.learning_rat = 3.0"]
    with pytest.raises(ValueError, match="learning_rat"):
        dry_run("bert_base_pretrain.gin", params)
    gin.clear_config(clear_constants=True)
    # Keras classes take **kwargs, so their unknown parameters are caught when they are built.
    params[-1] = "modeling.BertEncoder.hidden_sise = 3"
    with pytest.raises(ValueError, match="hidden_sise"):
        dry_run("bert_base_pretrain.gin", params)
    gin.clear_config(clear_constants=True)
    with pytest.raises(ValueError, match="NoSuchThing"):
        main.parse_gin(["gin/experiments/demo_pretrain.gin"], ["modeling.NoSuchThing.x = 3"])


def test_a_misspelt_macro_fails_before_any_work_naming_the_closest_one():
    with pytest.raises(main.UsageError, match="binds the macro TRAIN_STEP, which no configuration reads; did you "
                                              "mean TRAIN_STEPS?"):
        main.parse_gin(["demo_pretrain"], ["TRAIN_STEP = 100"])
    gin.clear_config(clear_constants=True)
    # Macros that some binding reads pass, from --gin_param or from a flag's override of another binding.
    main.parse_gin(["demo_pretrain"], ["TRAIN_STEPS = 100", "WARMUP_STEPS = 10"],
                   ["MODEL_DIR = 'elsewhere'", "launch.launch.model_dir = 'elsewhere'"])


@pytest.mark.parametrize("dry", [True, False])
def test_a_missing_init_checkpoint_fails_before_anything_is_created(tmp_path, spm_model, dry):
    tsv = tmp_path / "reviews.tsv"
    tsv.write_text("".join(f"{i % 2}\tgood fun story {i}\n" for i in range(20)), encoding="utf-8")
    params = TINY_ENCODER + ["VOCAB_SIZE = 150", f"SPM_MODEL = '{spm_model}'", f"TRAIN_TSV = '{tsv}'",
                             f"EVAL_TSV = '{tsv}'", f"INIT_CHECKPOINT = '{tmp_path}/no_pretraining'",
                             f"MODEL_DIR = '{tmp_path}/run'"]
    main.parse_gin(["demo_finetune"], params)
    with pytest.raises(FileNotFoundError, match=r"init_checkpoint '.*/no_pretraining' \(relative to .*\) holds no "
                                                r"checkpoint"):
        gin.get_configurable(launch.launch)(dry_run=dry)
    assert not (tmp_path / "run").exists()


def test_changing_train_steps_alone_keeps_the_demo_schedule_valid():
    main.parse_gin(["demo_pretrain"], ["TRAIN_STEPS = 100"])
    config = gin.query_parameter("launch.launch.config").scoped_configurable_fn()
    assert (config.trainer.optimizer_config.decay_steps, config.trainer.optimizer_config.warmup_steps) == (100, 6)


@pytest.mark.parametrize("experiment", ["demo_pretrain", "demo_finetune"])
def test_the_demo_runs_are_seeded_by_default(experiment):
    main.parse_gin([experiment], [])
    assert str(gin.query_parameter("launch.launch.seed")) == "%SEED" and gin.query_parameter("%SEED") == 0


def test_finetune_pretrained_builds_with_an_imported_model_gin(tmp_path):
    """The experiment, then the model.gin that the importer wrote (a tiny Hugging Face fixture): the imported
    sizes, vocabulary and WordPiece tokenizer replace the MiniLM defaults."""
    from research.interop import import_checkpoint
    imported = import_checkpoint.import_checkpoint("tests/fixtures/interop/hf_bert_uncased", str(tmp_path / "imported"))
    main.parse_gin(["gin/experiments/finetune_pretrained.gin", imported["gin_file"]],
                   [f"MODEL_DIR = '{tmp_path}/run'", "GLOBAL_BATCH_SIZE = 4", "EVAL_BATCH_SIZE = 4",
                    "SEQ_LEN = 32"])  # the fixture has 32 positions
    assert gin.query_parameter("%INIT_CHECKPOINT") == imported["checkpoint"]
    result = gin.get_configurable(launch.launch)(dry_run=True)
    assert result.model.network.get_embedding_table().shape == (64, 16)
    assert result.model.network.num_layers == 2
