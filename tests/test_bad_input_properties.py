"""Property-based bad input: every outcome is a result or a clear UserInputError, never a raw exception."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msbert_tf.data import readers, tasks
from msbert_tf.errors import UserInputError
from msbert_tf.inference.uncertainty import ExitRule

SST2 = tasks.get_task("sst2")
# Texts users send: empty, blank, control characters, mixed scripts, very long.
TEXTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "   ", "\t\n", "\x00\x01\x7f", "日本語 and English مرحبا", "café crème brûlée"]),
    st.integers(1000, 10000).map(lambda n: "word " * n),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300))
def test_any_bytes_as_a_tsv_read_or_refused_clearly(tmp_path, content):
    folder = tmp_path / "SST-2"
    folder.mkdir(exist_ok=True)
    (folder / "train.tsv").write_bytes(b"sentence\tlabel\n" + content)
    try:
        examples = readers.read_split(SST2, "train", str(tmp_path))
    except UserInputError as e:
        assert "train.tsv" in str(e)
        return
    assert len(examples.text_a) == len(examples.labels)
    assert all(t.strip() for t in examples.text_a)
    assert set(examples.labels.tolist()) <= {0, 1}


@settings(max_examples=200, deadline=None)
@given(threshold=st.floats(allow_nan=True, allow_infinity=True), kind=st.sampled_from(["entropy", "topk", "patience", "max"]),
       top_k=st.integers(-3, 8))
def test_any_threshold_is_valid_or_refused_clearly(threshold, kind, top_k):
    rule = ExitRule(kind, threshold=threshold, top_k=top_k)
    valid = (kind in ("entropy", "topk", "patience") and 0.0 <= threshold <= 1.0
             and (kind != "topk" or 2 <= top_k <= 4))
    if valid:
        assert rule.validate(num_labels=4) is rule
    else:
        with pytest.raises(UserInputError):
            rule.validate(num_labels=4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from msbert_tf import MSBert
    from tests.conftest import GLUE_DIR, tiny_config

    config = tiny_config(GLUE_DIR)
    config.jit_compile = False
    config.distill.epochs = 0  # the teacher alone is enough to exercise prediction
    config.model.random_backbone.num_layers = 1
    return MSBert(str(tmp_path_factory.mktemp("run")), config=config).fit(verbose=0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_any_text_gets_a_label_or_a_clear_refusal(trained, text):
    try:
        (out,) = trained.predict([text], threshold=0.5)
    except UserInputError as e:
        assert not text.strip() and "empty" in str(e)
        return
    assert text.strip(), "a blank text must be refused, not classified"
    assert out["label"] in ("0", "1") and out["exit_layer"] == 1
    assert math.isclose(sum(out["probabilities"]), 1.0, abs_tol=1e-4)
    assert np.all(np.isfinite(out["probabilities"]))
