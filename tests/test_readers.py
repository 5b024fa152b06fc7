import pytest

from msbert_tf.data import readers, tasks
from msbert_tf.errors import UserInputError

SST2 = tasks.get_task("sst2")


def test_sst2_rows_and_labels(glue_dir):
    train = readers.read_split(SST2, "train", glue_dir)
    dev = readers.read_split(SST2, "dev", glue_dir)
    assert (len(train), len(dev)) == (67349, 872)
    assert set(train.labels.tolist()) == {0, 1}
    assert dev.text_a[0].startswith("it 's a charming")
    assert dev.labels[0] == 1 and dev.text_b is None


def test_unknown_task():
    with pytest.raises(UserInputError, match="unknown task 'sst3'.*sst2"):
        tasks.get_task("sst3")


def _write(tmp_path, text):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    (folder / "train.tsv").write_text(text)
    return str(tmp_path)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(UserInputError, match="--data_dir"):
        readers.read_split(SST2, "train", str(tmp_path))


@pytest.mark.parametrize(
    "text, message",
    [
        ("sentence\tlabel\ngood\t1\nbad\t0\textra\n", "line 3: 3 columns"),
        ("sentence\tlabel\ngood\t1\nbad\t7\n", "line 3: label '7' is not in the label set"),
        ("sentence\tlabel\ngood\t1\n  \t0\n", "line 3: empty text"),
        ("text\tlabel\ngood\t1\n", "lacks column"),
        ("", "empty"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    data_dir = _write(tmp_path, text)
    with pytest.raises(UserInputError, match=message):
        readers.read_split(SST2, "train", data_dir)


def test_tfds_records_give_the_same_examples():
    records = [{"sentence": b"good film", "label": 1, "idx": 0}, {"sentence": b"dull", "label": 0, "idx": 1}]
    examples = readers.examples_from_records(SST2, records, source="TFDS glue/sst2")
    assert examples.text_a == ["good film", "dull"]
    assert examples.labels.tolist() == [1, 0]
    with pytest.raises(UserInputError, match="row 0: label 5"):
        readers.examples_from_records(SST2, [{"sentence": b"x", "label": 5}], source="TFDS")


def test_take():
    examples = readers.Examples(text_a=["a", "b", "c"], labels=readers.np.array([0, 1, 0]))
    assert len(examples.take(2)) == 2 and examples.take(None) is examples
