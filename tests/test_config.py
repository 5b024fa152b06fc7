import glob
import json
import os

import numpy as np
import pytest

from msbert_tf.config import RunConfig
from msbert_tf.errors import UserInputError
from tests.conftest import ROOT


def test_round_trip_through_json(tmp_path):
    config = RunConfig.from_dict({"distill": {"loss": "kl"}, "data": {"bucket_boundaries": [8, 16]}})
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    loaded = RunConfig.from_file(str(path))
    assert loaded == config
    assert loaded.data.bucket_boundaries == (8, 16)
    assert loaded.distill.loss == "kl"


def test_unknown_field_is_named():
    with pytest.raises(UserInputError, match="distill.los"):
        RunConfig.from_dict({"distill": {"los": "kl"}})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"distill": {"loss": "mse"}}, "distill.loss"),
        ({"distill": {"emd_solver": "lp"}}, "distill.emd_solver"),
        ({"model": {"head": "cnn"}}, "model.head"),
        ({"model": {"teacher_pooling": "max"}}, "model.teacher_pooling"),
        ({"data": {"batch_size": 0}}, "data.batch_size"),
        ({"distill": {"temperature": 0}}, "temperature"),
        ({"data": {"max_train_examples": 0}}, "data.max_train_examples must be None or at least 1"),
        ({"data": {"bucket_boundaries": [20, 12]}}, "strictly increasing"),
        ({"model": {"head_dim": 7, "head_num_heads": 2}}, "multiple of model.head_num_heads"),
        ({"model": {"head_depth": 0}}, "model.head_depth must be at least 1, got 0"),
        ({"teacher": {"epochs": 0}}, "teacher.epochs must be positive"),
        ({"distill": {"sinkhorn_epsilon": 0}}, "sinkhorn_epsilon"),
        ({"distill": {"layer_weight_temperature": 0}}, "layer_weight_temperature"),
        ({"distill": {"disagreement_penalty": -1.0}}, "distill.disagreement_penalty must be 0 \\(off\\) or more"),
        ({"uncertainty": "fast"}, "uncertainty='fast' is not one of entropy, topk, patience, learned"),
        ({"final_exits": []}, r"final_exits must be one or more whole numbers >= 1 \(1: the last exit alone\), got \[\]"),
        ({"final_exits": [0, 4]}, r"final_exits must be one or more whole numbers >= 1 .*got \[0, 4\]"),
        ({"final_exits": ["4"]}, r"final_exits must be one or more whole numbers >= 1 .*got \['4'\]"),
    ],
)
def test_bad_values_are_rejected(values, message):
    with pytest.raises(UserInputError, match=message):
        RunConfig.from_dict(values).validate()


def test_presets_load():
    import glob
    import os

    presets = glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.json"))
    assert presets
    for path in presets:
        RunConfig.from_file(path).validate()


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.json"))))
def test_every_preset_loads_and_names_a_task(path):
    from msbert_tf.data.tasks import get_task

    with open(path) as f:
        config = RunConfig.from_dict(json.load(f))
    config.validate()
    assert get_task(config.data.task).name == os.path.basename(path)[: -len(".json")]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"data": {"label_names": [0, 1]}}, "label_names must be 2 or more strings"),
        ({"data": {"label_names": ["only"]}}, "label_names must be 2 or more strings"),
        ({"data": {"bucket_boundaries": ["12"]}}, "bucket_boundaries must be integers"),
    ],
)
def test_list_fields_are_checked_element_by_element(values, message):
    with pytest.raises(UserInputError, match=message):
        RunConfig.from_dict(values).validate()


def test_numpy_numbers_are_taken_as_numbers_and_bools_are_not():
    from msbert_tf.config import RunConfig

    config = RunConfig().replace(seed=np.int64(7), batch_size=np.int32(16), **{"teacher.learning_rate": np.float32(0.5)})
    assert (config.seed, type(config.seed), config.data.batch_size, config.teacher.learning_rate) == (7, int, 16, 0.5)
    with pytest.raises(UserInputError, match="config field seed must be int, got True"):
        RunConfig().replace(seed=True)
    with pytest.raises(UserInputError, match="no config field by that name alone: use its dotted name "
                                             r"\(model.random_backbone.num_heads\)"):
        RunConfig().replace(num_heads=4)


def test_differing_settings_by_field_and_section():
    from msbert_tf.config import RunConfig, differing_settings

    a = RunConfig()
    b = a.replace(**{"teacher.learning_rate": 1e-3, "distill.epochs": 3, "max_eval_examples": 10})
    assert differing_settings(a, b) == ["data.max_eval_examples", "distill.epochs", "teacher.learning_rate"]
    assert differing_settings(a, b, among=("teacher", "seed")) == ["teacher.learning_rate"]
    assert differing_settings(a, b, besides=("data.max_eval_examples", "distill")) == ["teacher.learning_rate"]
    assert differing_settings(a, a.replace()) == []
