import numpy as np
import pytest

from msbert_tf.config import ModelConfig
from msbert_tf.data import pipeline
from msbert_tf.data.readers import Examples
from msbert_tf.models.backbone import load_backbone


@pytest.fixture(scope="module")
def preprocessor():
    return load_backbone(ModelConfig(backbone="random"), max_seq_length=12)[1]


def _examples(texts):
    return Examples(text_a=texts, labels=np.arange(len(texts), dtype=np.int32) % 2)


def test_encode_counts_truncation(preprocessor):
    long = " ".join(["word"] * 30)
    split = pipeline.encode(_examples(["a good film", long, "bad"]), preprocessor)
    assert split.features["token_ids"].shape == (3, 12)
    assert split.num_truncated == 1
    # [CLS] a good film [SEP]
    assert split.lengths.tolist() == [5, 12, 3]


def test_train_batches_are_trimmed_and_bucketed(preprocessor):
    rng = np.random.default_rng(0)
    texts = [" ".join(["word"] * int(n)) for n in rng.integers(1, 10, size=64)]
    split = pipeline.encode(_examples(texts), preprocessor)
    dataset = pipeline.train_dataset(split, batch_size=4, bucket_boundaries=(5, 8), seed=1)
    for features, labels in dataset.take(20):
        lengths = features["padding_mask"].numpy().sum(1)
        assert features["token_ids"].shape[1] == lengths.max()
        # One bucket per batch: every row on the same side of each boundary.
        for boundary in (5, 8):
            assert len(set((lengths < boundary).tolist())) == 1


def test_train_stream_is_seeded_and_skippable(preprocessor):
    texts = [" ".join(["w"] * (i % 7 + 1)) + f" {i}" for i in range(40)]
    split = pipeline.encode(_examples(texts), preprocessor)

    def stream(skip, n):
        ds = pipeline.train_dataset(split, 4, (6,), seed=3, skip_batches=skip)
        return [f["token_ids"].numpy().tolist() for f, _ in ds.take(n)]

    full = stream(0, 12)
    assert stream(0, 12) == full
    assert stream(5, 7) == full[5:]


def test_eval_keeps_row_order(preprocessor):
    texts = ["one", "two words", "three short words", "x"]
    split = pipeline.encode(_examples(texts), preprocessor)
    rows = np.concatenate([y.numpy() for _, y in pipeline.eval_dataset(split, 3)])
    assert rows.tolist() == split.labels.tolist()


def test_every_iterator_yields_the_same_stream(preprocessor):
    # Keras peeks a batch through its own iterator under tf.distribute; that
    # must not shift the batches training sees.
    split = pipeline.encode(_examples([f"row {'x ' * (i % 7)}{i}" for i in range(40)]), preprocessor)
    dataset = pipeline.train_dataset(split, 4, (6,), seed=3)
    peek = iter(dataset)
    next(peek), next(peek)

    def ids(n):
        return [b["token_ids"].numpy().tolist() for b, _ in dataset.take(n)]

    assert ids(25) == ids(25)  # 25 batches cross the epoch boundary (10 per epoch)
    first, second = ids(20)[:10], ids(20)[10:]
    assert first != second  # each epoch reshuffled


def test_eval_batches_round_up_to_the_given_widths(preprocessor):
    split = pipeline.encode(_examples(["one", "two more words here", "a b c d e f g h i"]), preprocessor)
    widths = [f["token_ids"].shape[1] for f, _ in pipeline.eval_dataset(split, 1, widths=(4, 8, 12))]
    assert split.lengths.tolist() == [3, 6, 11]
    assert widths == [4, 8, 12]
    assert [f["token_ids"].shape[1] for f, _ in pipeline.eval_dataset(split, 1)] == [3, 6, 11]
