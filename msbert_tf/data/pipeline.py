"""Tokenize once, then serve length-bucketed batches padded to their longest row.

Padding every batch to `max_seq_length` trains about 4x slower on CPU than
padding to the batch's longest row (FINDINGS 6), so splits are encoded once
to fixed-width arrays and every batch is trimmed to its longest row.

```python
split = encode(examples, preprocessor)          # numpy arrays, [N, max_len]
dataset = train_dataset(split, batch_size=32, bucket_boundaries=(16, 32), seed=0)
```
"""

import dataclasses

import numpy as np
import tensorflow as tf
from absl import logging

FEATURES = ("token_ids", "segment_ids", "padding_mask")
ENCODE_CHUNK = 4096


@dataclasses.dataclass
class EncodedSplit:
    features: dict
    labels: np.ndarray
    num_truncated: int

    def __len__(self):
        return len(self.labels)

    @property
    def lengths(self):
        return self.features["padding_mask"].sum(axis=1)


@tf.function(reduce_retracing=True)
def _encode_chunk(preprocessor, *segments):
    # Graph mode: the tokenizer gives ragged tensors, not Python lists.
    token_counts = tf.add_n([preprocessor.tokenizer(s).row_lengths() for s in segments])
    # A positional tuple would be read as (x, y): pairs go in as `x=`.
    packed = preprocessor(x=tuple(segments) if len(segments) > 1 else segments[0])
    # [CLS] and one [SEP] per segment.
    too_long = token_counts + 1 + len(segments) > preprocessor.sequence_length
    return packed, tf.reduce_sum(tf.cast(too_long, tf.int32))


def encode(examples, preprocessor, name="split"):
    """Tokenizes and packs `examples` with a keras-hub preprocessor.

    Texts longer than the preprocessor's `sequence_length` are truncated (its
    `truncate` strategy) and counted, so the log says how many lost words.
    """
    max_len = preprocessor.sequence_length
    chunks = {key: [] for key in FEATURES}
    num_truncated = 0
    for start in range(0, len(examples), ENCODE_CHUNK):
        segments = [tf.constant(examples.text_a[start : start + ENCODE_CHUNK])]
        if examples.text_b is not None:
            segments.append(tf.constant(examples.text_b[start : start + ENCODE_CHUNK]))
        packed, overflow = _encode_chunk(preprocessor, *segments)
        num_truncated += int(overflow)
        for key in FEATURES:
            chunks[key].append(np.asarray(packed[key], dtype=np.int32))
    if num_truncated:
        logging.info(
            "%s: %d of %d examples are longer than %d tokens and were truncated.",
            name, num_truncated, len(examples), max_len,
        )
    features = {
        key: np.concatenate(parts) if parts else np.zeros((0, max_len), np.int32)
        for key, parts in chunks.items()
    }
    return EncodedSplit(features=features, labels=examples.labels, num_truncated=num_truncated)


def _trimmer(widths=None):
    """Cuts a batch to its longest row, or up to the next of `widths`.

    Rounding up to a few fixed widths bounds the number of distinct shapes,
    which XLA compiles once each.
    """
    widths = None if widths is None else tf.constant(sorted(widths), tf.int32)

    def trim(features, labels):
        width = tf.reduce_max(tf.reduce_sum(features["padding_mask"], axis=1))
        if widths is not None:
            width = tf.gather(widths, tf.argmax(tf.cast(widths >= width, tf.int32)))
        return {key: value[:, :width] for key, value in features.items()}, labels

    return trim


def train_dataset(
    split, batch_size, bucket_boundaries, seed, skip_batches=0, pad_to_bucket_boundary=False,
):
    """Endless batches of similar lengths, each epoch fully shuffled; deterministic for a seed.

    `skip_batches` resumes the stream where an interrupted run left it;
    `pad_to_bucket_boundary` pads to the bucket's width instead of the
    longest row (for XLA).
    """
    max_len = split.features["token_ids"].shape[1]
    boundaries = [b for b in bucket_boundaries if b < max_len]
    features = {key: tf.constant(value) for key, value in split.features.items()}
    labels = tf.constant(split.labels)
    size = len(split)

    def epoch_order(epoch):
        # Stateless: epoch e's order depends on (seed, e) alone, so every
        # iterator over this dataset yields the same stream. (A `shuffle`
        # with reshuffling shares its seed state between iterators: Keras
        # peeking a batch under a tf.distribute strategy shifted the order.)
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order)

    dataset = tf.data.Dataset.counter().flat_map(epoch_order).map(
        lambda i: ({key: tf.gather(value, i) for key, value in features.items()}, tf.gather(labels, i))
    )
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda x, y: tf.reduce_sum(x["padding_mask"]),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        drop_remainder=True,
    )
    widths = boundaries + [max_len] if pad_to_bucket_boundary else None
    dataset = dataset.map(_trimmer(widths), num_parallel_calls=tf.data.AUTOTUNE)
    if skip_batches:
        dataset = dataset.skip(skip_batches)
    return dataset.prefetch(tf.data.AUTOTUNE)


def eval_dataset(split, batch_size, widths=None):
    """Batches in file order (so predictions line up with rows), trimmed to
    their longest row, or up to the next of `widths` (few shapes, for XLA)."""
    dataset = tf.data.Dataset.from_tensor_slices((split.features, split.labels))
    dataset = dataset.batch(batch_size).map(_trimmer(widths), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
