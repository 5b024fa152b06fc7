"""Shared fixtures: where ../shared/data is, and tiny run configs."""

import os

import pytest

from msbert_tf.config import RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
GLUE_DIR = os.path.join(SHARED_DATA, "glue")


@pytest.fixture(scope="session")
def glue_dir():
    """The shared GLUE folder; CI sets MSBERT_REQUIRE_SHARED_DATA so a missing one fails."""
    if not os.path.isdir(GLUE_DIR):
        if os.environ.get("MSBERT_REQUIRE_SHARED_DATA"):
            pytest.fail(f"shared data missing at {GLUE_DIR}")
        pytest.skip(f"shared data missing at {GLUE_DIR}")
    return GLUE_DIR


def tiny_config(glue_dir, **distill):
    """A run on a random 2-layer BERT and a few SST-2 rows: seconds on CPU."""
    return RunConfig.from_dict(
        {
            "data": {
                "data_dir": glue_dir,
                "max_train_examples": 96,
                "max_eval_examples": 32,
                "max_seq_length": 32,
                "batch_size": 16,
            },
            "model": {"backbone": "random", "head": "attention", "head_dim": 8},
            "teacher": {"epochs": 1.0, "learning_rate": 1e-3},
            "distill": {"epochs": 1.0, **distill},
            "checkpoint_every_steps": 3,
        }
    )


def fit_tiny_run(tmp_path_factory, max_calibration_examples):
    """A trained tiny run (no XLA) holding out this many calibration rows: (folder, MSBert)."""
    from msbert_tf import MSBert

    config = tiny_config(GLUE_DIR)
    config.jit_compile = False
    config.data.max_calibration_examples = max_calibration_examples
    out = str(tmp_path_factory.mktemp("run"))
    return out, MSBert(out, config=config).fit(verbose=0)
