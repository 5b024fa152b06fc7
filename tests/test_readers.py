import json

import numpy as np

import pytest

from msbert_tf.data import readers, tasks
from msbert_tf.errors import UserInputError
from tests.conftest import GLUE_DIR

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


TREC_DIR = GLUE_DIR.replace("glue", "trec")


@pytest.mark.parametrize(
    "name, data_dir, train_rows, dev_rows, pair",
    [
        ("cola", GLUE_DIR, 8551, 1043, False),
        ("mrpc", GLUE_DIR, 3667, 408, True),
        ("rte", GLUE_DIR, 2490, 277, True),
        ("trec6", TREC_DIR, 5444, 499, False),
        # One training row has a corrupt label (`NUM:How`, line 4451) and is skipped.
        ("trec50", TREC_DIR, 5443, 499, False),
    ],
)
def test_shared_task_files(glue_dir, name, data_dir, train_rows, dev_rows, pair):
    task = tasks.get_task(name)
    train = readers.read_split(task, "train", data_dir)
    dev = readers.read_split(task, "dev", data_dir)
    assert (len(train), len(dev)) == (train_rows, dev_rows)
    # Every label of the set occurs in training.
    assert set(train.labels.tolist()) == set(range(task.num_labels))
    assert (train.text_b is not None) == pair
    if pair:
        assert len(train.text_b) == train_rows and all(train.text_b)


def test_first_rows_read_as_written(glue_dir):
    mrpc = readers.read_split(tasks.get_task("mrpc"), "dev", GLUE_DIR)  # header begins with a BOM
    assert mrpc.text_a[0].startswith("He said the foodservice pie business")
    assert mrpc.text_b[0].startswith('" The foodservice pie business')
    cola = readers.read_split(tasks.get_task("cola"), "train", GLUE_DIR)  # no header row
    assert cola.text_a[0] == "Our friends won't buy this analysis, let alone the next one we propose."
    trec = readers.read_split(tasks.get_task("trec6"), "dev", TREC_DIR)
    assert trec.text_a[0] == "How far is it from Denver to Aspen ?"
    assert tasks.get_task("trec6").label_names[trec.labels[0]] == "NUM"


@pytest.mark.parametrize(
    "text, message",
    [
        ("NUM:dist How far ?\nWHAT:x Why ?\n", "line 2: label 'WHAT' is not in the label set"),
        ("NUM:dist How far ?\nnonsense\n", "line 2: expected `COARSE:fine question`"),
        ("NUM:dist\n", "line 1: empty text"),
    ],
)
def test_malformed_trec_files(tmp_path, text, message):
    (tmp_path / "train_5500.label").write_text(text)
    with pytest.raises(UserInputError, match=message):
        readers.read_split(tasks.get_task("trec6"), "train", str(tmp_path))


def test_pair_task_without_its_second_column(tmp_path):
    folder = tmp_path / "RTE"
    folder.mkdir()
    (folder / "dev.tsv").write_text("index\tsentence1\tlabel\n0\ta cat sat\tentailment\n")
    with pytest.raises(UserInputError, match=r"lacks column\(s\) \['sentence2'\]"):
        readers.read_split(tasks.get_task("rte"), "dev", str(tmp_path))


def test_tfds_labels_are_mapped_by_name_when_the_names_are_the_tasks():
    trec = tasks.get_task("trec6")
    # A source whose ids order the same names differently.
    source_names = ["DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC"]
    records = [{"text": b"Who was Galileo ?", "label-coarse": 3}]
    examples = readers.examples_from_records(trec, records, "TFDS trec", source_label_names=source_names)
    assert trec.label_names[examples.labels[0]] == "HUM"


def _custom(tmp_path, train, dev=None, suffix=".csv", **columns):
    from msbert_tf.config import DataConfig

    (tmp_path / f"train{suffix}").write_text(train)
    (tmp_path / f"dev{suffix}").write_text(dev if dev is not None else train)
    data = DataConfig(task="custom", train_file=str(tmp_path / f"train{suffix}"),
                      dev_file=str(tmp_path / f"dev{suffix}"), **columns)
    return data, readers.resolve_task(data)


def test_custom_csv_with_quoted_commas(tmp_path):
    data, task = _custom(
        tmp_path,
        'review,stars\n"good, really good",5\n"bad, sadly",1\nfine,3\n',
        text_column="review", label_column="stars",
    )
    assert task.label_names == ("1", "3", "5") and data.label_names == ("1", "3", "5")
    train = readers.read_split(task, "train")
    assert train.text_a == ["good, really good", "bad, sadly", "fine"]
    assert train.labels.tolist() == [2, 0, 1]


def test_custom_jsonl_pairs_with_labels_as_names(tmp_path):
    rows = [
        {"q": "Who was Galileo ?", "a": "an astronomer", "y": "yes"},
        {"q": "Who was Galileo ?", "a": "a river", "y": "no"},
    ]
    _, task = _custom(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), suffix=".jsonl",
                      text_column="q", text_pair_column="a", label_column="y")
    dev = readers.read_split(task, "dev")
    assert task.label_names == ("no", "yes")
    assert dev.text_b == ["an astronomer", "a river"] and dev.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    "train, dev, suffix, message",
    [
        ("text,label\ngood,1\nbad,0\n", "text,label\nok,1\nmeh,2\n", ".csv", r"dev.csv, line 3: label '2' is not in the label set \['0', '1'\]"),
        ("text,label\ngood,1\nbad,0\n", "sentence,label\nok,1\n", ".csv", r"lacks column\(s\) \['text'\]"),
        ('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n', '{"text": "a", "label": 1}\n[1, 2]\n', ".jsonl", "dev.jsonl, line 2: expected a JSON object"),
        ('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n', '{"label": 1}\n', ".jsonl", "dev.jsonl, line 1: no 'text' field"),
        ("text,label\ngood,1\nbad,0\n", "text,label\n ,1\n", ".csv", "dev.csv, line 2: empty text"),
        ("text,label\ngood,1\nbad,0\n", "text,label\n", ".csv", "dev.csv has no rows"),
        ("text\tlabel\ngood\t1\nbad\t0\n", "text\tlabel\nok\t1\textra\n", ".tsv", "line 2: the row has a different number of columns"),
    ],
)
def test_custom_files_with_problems(tmp_path, train, dev, suffix, message):
    _, task = _custom(tmp_path, train, dev, suffix=suffix)
    with pytest.raises(UserInputError, match=message):
        readers.read_split(task, "dev")


def test_custom_task_needs_two_labels_and_known_file_types(tmp_path):
    with pytest.raises(UserInputError, match="1 distinct label"):
        _custom(tmp_path, "text,label\ngood,1\nbad,1\n")
    with pytest.raises(UserInputError, match="unknown file type"):
        _custom(tmp_path, "text,label\ngood,1\nbad,0\n", suffix=".xlsx")


def test_trec50_skips_an_unknown_label_only_in_training(tmp_path, caplog):
    trec50 = tasks.get_task("trec50")
    text = "NUM:dist How far ?\nNUM:How count many ?\n"
    (tmp_path / "train_5500.label").write_text(text)
    (tmp_path / "TREC_10.label").write_text(text)
    assert len(readers.read_split(trec50, "train", str(tmp_path))) == 1
    assert "line 2: label 'NUM:How'" in caplog.text
    with pytest.raises(UserInputError, match="line 2: label 'NUM:How' is not in the label set"):
        readers.read_split(trec50, "dev", str(tmp_path))


@pytest.mark.parametrize(
    "name, header, row, expected",
    [
        ("qnli", "index\tquestion\tsentence\tlabel", "0\tWho?\tHe did.\tentailment", ("Who?", "He did.", 0)),
        ("qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "0\t1\t2\tWhy?\tHow come?\t1", ("Why?", "How come?", 1)),
        ("mnli", "index\tgenre\tsentence1\tsentence2\tlabel1\tgold_label",
         "0\tfiction\tA man sleeps.\tNobody sleeps.\tcontradiction\tcontradiction", ("A man sleeps.", "Nobody sleeps.", 2)),
    ],
)
def test_registered_glue_layouts_without_shared_files(tmp_path, name, header, row, expected):
    task = tasks.get_task(name)
    folder = tmp_path / task.glue_dir
    folder.mkdir()
    (folder / task.dev_file).write_text(f"{header}\n{row}\n")
    examples = readers.read_split(task, "dev", str(tmp_path))
    assert (examples.text_a[0], examples.text_b[0], int(examples.labels[0])) == expected


def test_mnli_has_matched_and_mismatched_dev_sets():
    matched, mismatched = tasks.get_task("mnli"), tasks.get_task("mnli_mismatched")
    assert (matched.dev_file, mismatched.dev_file) == ("dev_matched.tsv", "dev_mismatched.tsv")
    assert (matched.tfds_dev_split, mismatched.tfds_dev_split) == ("validation_matched", "validation_mismatched")
    assert matched.num_labels == 3


def test_custom_jsonl_values_are_checked_and_integer_labels_unified(tmp_path):
    _, task = _custom(tmp_path, '{"text": "a", "label": 1}\n{"text": "b", "label": 1.0}\n{"text": "c", "label": 0}\n',
                      suffix=".jsonl")
    assert task.label_names == ("0", "1")  # 1 and 1.0 are one class
    _, task = _custom(tmp_path, '{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n',
                      '{"text": null, "label": 1}\n', suffix=".jsonl")
    with pytest.raises(UserInputError, match="line 1: field 'text' is null, not a text"):
        readers.read_split(task, "dev")


def test_custom_tsv_keeps_quotes_as_text(tmp_path):
    _, task = _custom(tmp_path, 'text\tlabel\n"quoted start\t1\nplain\t0\n', suffix=".tsv")
    assert readers.read_split(task, "train").text_a == ['"quoted start', "plain"]


def test_tasks_without_a_tfds_source_say_so():
    with pytest.raises(UserInputError, match="trec50 has no TFDS source"):
        readers.read_split(tasks.get_task("trec50"), "train", None)


def test_hold_out_draws_disjoint_rows_and_keeps_the_files_order():
    examples = readers.Examples(text_a=[f"t{i}" for i in range(100)], labels=np.arange(100))
    rest, held = readers.hold_out(examples, 0.1, None, seed=3)
    assert len(held) == 10 and len(rest) == 90
    assert not set(rest.text_a) & set(held.text_a)
    assert rest.labels.tolist() == sorted(rest.labels.tolist())
    # The same seed draws the same rows; another seed others; the cap applies.
    assert readers.hold_out(examples, 0.1, None, seed=3)[1].text_a == held.text_a
    assert readers.hold_out(examples, 0.1, None, seed=4)[1].text_a != held.text_a
    assert len(readers.hold_out(examples, 0.1, 4, seed=3)[1]) == 4
    assert readers.hold_out(examples, 0.0, None, seed=3) == (examples, None)


def test_plain_text_rows_one_per_line(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("a fine film\nno good\n")
    assert readers.read_texts(SST2, str(path)).text_a == ["a fine film", "no good"]
    path.write_text("He left.\tHe went away.\n")
    pair = readers.read_texts(tasks.get_task("mrpc"), str(path))
    assert (pair.text_a, pair.text_b) == (["He left."], ["He went away."])
    path.write_text("one\n\nthree\n")
    with pytest.raises(UserInputError, match="line 2: expected a text"):
        readers.read_texts(SST2, str(path))
    path.write_text("no tab here\n")
    with pytest.raises(UserInputError, match="line 1: expected two texts with one tab"):
        readers.read_texts(tasks.get_task("mrpc"), str(path))
