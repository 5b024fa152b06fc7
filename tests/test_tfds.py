"""The TFDS path (no --data_dir), offline: TFDS's own mock data, and a
download that reaches TFDS's preparation step and then fails for want of a
network."""

import numpy as np
import pytest

from msbert_tf.config import RunConfig
from msbert_tf.data import readers, tasks
from msbert_tf.errors import UserInputError


def test_offline_download_says_network_and_data_dir(monkeypatch, tmp_path):
    """Gets as far as `download_and_prepare` (where tensorflow-datasets 4.9
    imports `importlib_resources` without declaring it): without that module
    installed the error would be an import failure, not this one."""
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'dl.fbaipublicfiles.com'")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
    # A fresh TFDS folder, so nothing prepared before can be read instead.
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(UserInputError) as error:
        readers.read_tfds(tasks.get_task("sst2"), "train")
    message = str(error.value)
    assert "ConnectionError" in message and "needs a network" in message, message
    assert "--data_dir=" in message and "\n" not in message


def _tfds_config(task):
    return RunConfig.from_dict(
        {
            "data": {"task": task, "max_seq_length": 16, "batch_size": 8},
            "model": {"backbone": "random", "head": "mlp", "head_dim": 8},
            "teacher": {"epochs": 1.0, "learning_rate": 1e-3},
            "distill": {"epochs": 1.0},
            "jit_compile": False,
        }
    )


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_train_and_evaluate_from_mocked_tfds(task, tmp_path):
    import tensorflow_datasets as tfds

    from msbert_tf.inference.evaluation import evaluate, rules_for
    from msbert_tf.training.trainer import train

    with tfds.testing.mock_data(num_examples=40):
        result = train(_tfds_config(task), str(tmp_path / "run"), verbose=0)
    assert result.task.is_pair == (task == "mrpc")
    assert len(result.dev_split) == 40
    rules = rules_for("entropy", thresholds=(0.0, 1.0))
    report = evaluate(result.classifier, result.dev_split, rules, max_drop=0.5)
    assert len(report["dev"]["exits"]) == 2
    # Speed 0 is the teacher: every row exits at the last layer.
    assert report["sweep"][0]["mean_exit_layer"] == 2
    assert np.isclose(report["sweep"][0]["metric"], report["dev"]["teacher"])
