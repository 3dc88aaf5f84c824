"""Per-replica batches and per-worker shards of the masked-LM inputs; where each task writes."""
import tempfile

import tensorflow as tf

from distributed import harness
from research.core import distribute
from research.tasks import masked_lm


def _config(records, batch=4):
    return masked_lm.PretrainDataConfig(input_path=records, global_batch_size=batch, seq_len=16, vocab_size=60,
                                        max_predictions_per_seq=10, mask_rate=1.0, mask_prob=0.0, random_prob=0.0,
                                        shuffle_buffer_size=1)


def _task(records):
    return masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(model=lambda: None, train_data=_config(records)))


def test_per_replica_batch_is_global_over_replicas_and_workers_read_their_own_shard(tmp_path):
    records = harness.write_split_invariant_records(tmp_path)
    task = _task(records)
    # MirroredStrategy, 2 replicas, one input pipeline: batches of 2 alternating the shards.
    mirrored = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2)
    batch = next(iter(task.build_inputs(task.task_config.train_data, input_context=mirrored)))
    ids = batch["masked_lm_ids"].numpy()
    assert ids.shape == (2, 10) and (ids[0] != ids[1]).any()
    # 2 workers x 1 replica: each pipeline reads one shard only, batches of 2.
    per_worker = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        ids = next(iter(task.build_inputs(task.task_config.train_data, input_context=context)))["masked_lm_ids"]
        assert ids.shape == (2, 10) and (ids.numpy()[0] == ids.numpy()[1]).all()
        per_worker.append(ids.numpy()[0])
    assert (per_worker[0] != per_worker[1]).any()
    # One device: the global batch holds both sequences twice, as the two workers together.
    ids = next(iter(task.build_inputs(task.task_config.train_data)))["masked_lm_ids"].numpy()
    assert ids.shape == (4, 10)
    assert sorted(map(tuple, ids.tolist())) == sorted(map(tuple, [*per_worker, *per_worker]))


def test_single_process_strategies_write_model_dir(tmp_path, monkeypatch):
    """No temporary directory is made: task_write_dir would make it under tempfile's directory."""
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    model_dir = tmp_path / "model"
    for strategy in (tf.distribute.get_strategy(), tf.distribute.OneDeviceStrategy("/cpu:0")):
        assert distribute.is_chief(strategy)
        assert distribute.task_write_dir(str(model_dir), strategy) == str(model_dir)
    assert not list(temp_root.iterdir())
