import numpy as np
import pytest

from msbert_tf.config import DataConfig
from msbert_tf.data import readers, tasks
from msbert_tf.data.sentences import hold_out_sentences, sentence_rows
from msbert_tf.errors import UserInputError

# Two parses as SST-2 stores them: each sentence and its phrases, a phrase
# shared by both ("the film") once, and a word that is only part of a word
# elsewhere ("good" inside "goodness").
PHRASES = [
    "the film is good", "the film", "is good", "good",
    "goodness , the film bored me", "bored me", "goodness",
    "good", "a sentence alone",
]


def _examples(texts):
    return readers.Examples(text_a=list(texts), labels=np.arange(len(texts)))


def test_sentences_are_the_rows_no_other_row_contains_word_for_word():
    assert sentence_rows(PHRASES).tolist() == [0, 4, 8]
    assert sentence_rows(["good", "goodness"]).tolist() == [0, 1]
    # A duplicated sentence counts once; a blank row is no sentence.
    assert sentence_rows(["a b", "a b", " "]).tolist() == [0]


def test_held_out_sentences_take_the_phrases_only_they_contain():
    examples = _examples(PHRASES)
    for seed in range(20):
        rest, held = hold_out_sentences(examples, 0.34, None, seed)
        assert len(held) == 1 and held.text_a[0] in {"the film is good", "goodness , the film bored me",
                                                      "a sentence alone"}
        if held.text_a == ["the film is good"]:
            # "is good" and both "good" rows go with it; "the film" stays: the kept sentence holds it.
            assert rest.text_a == ["the film", "goodness , the film bored me", "bored me", "goodness",
                                   "a sentence alone"]
        if held.text_a == ["goodness , the film bored me"]:
            assert rest.text_a == ["the film is good", "the film", "is good", "good", "good", "a sentence alone"]
        assert rest.labels.tolist() == sorted(rest.labels.tolist())
        assert held.text_a[0] not in rest.text_a


def test_held_out_sentences_follow_the_seed_the_fraction_and_the_cap():
    texts = [f"w{i} x{i} y{i}" for i in range(50)] + [f"x{i} y{i}" for i in range(50)]
    rest, held = hold_out_sentences(_examples(texts), 0.2, None, seed=3)
    assert len(held) == 10 and len(rest) == 80
    assert hold_out_sentences(_examples(texts), 0.2, None, seed=3)[1].text_a == held.text_a
    assert hold_out_sentences(_examples(texts), 0.2, None, seed=4)[1].text_a != held.text_a
    assert len(hold_out_sentences(_examples(texts), 0.2, 4, seed=3)[1]) == 4
    examples = _examples(texts)
    assert hold_out_sentences(examples, 0.0, None, seed=3) == (examples, None)


def test_training_rows_hold_out_sentences_when_asked_and_refuse_pairs(tmp_path):
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    glue.joinpath("train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(PHRASES)))
    data = DataConfig(data_dir=str(tmp_path / "glue"), calibration_source="held_out_sentences",
                      calibration_fraction=0.34)
    sst2 = tasks.get_task("sst2")
    rest, held = readers.training_rows(sst2, data, seed=0)
    expected = hold_out_sentences(readers.read_split(sst2, "train", data.data_dir), 0.34, 4000, 0)
    assert len(held) == 1 and (rest.text_a, held.text_a) == (expected[0].text_a, expected[1].text_a)
    pair = DataConfig(task="mrpc", data_dir=str(tmp_path / "glue"), calibration_source="held_out_sentences")
    with pytest.raises(UserInputError, match="mrpc is a pair task: use --calibration_source=held_out"):
        readers.training_rows(tasks.get_task("mrpc"), pair, seed=0)
