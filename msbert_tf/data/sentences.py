"""Whole sentences held out of a file of phrases, with the phrases only they hold.

SST-2's training file holds every phrase of each training sentence's parse
tree (67,349 rows from 6,885 sentences); its dev and test sets hold whole
sentences only. A random slice of the training file is mostly short phrases,
and a held-out sentence's own phrases were trained on: calibrated there, a
threshold did not keep its promise on dev (BENCHMARKS.md). Holding out whole
sentences, together with every phrase that no kept sentence holds, leaves
rows like dev's: the training file becomes what it would have been had those
sentences been in the dev split.

Example:

```python
texts = ["a good film", "good", "good film", "bad acting", "bad"]
sentence_rows(texts)  # array([0, 3])
```
"""

import collections

import numpy as np


def sentence_rows(texts):
    """Indices of the rows no other row contains, word for word (one index
    per distinct text), in file order."""
    index = _WordIndex()
    # Longest first, as compared: with runs of spaces collapsed.
    for row in sorted(range(len(texts)), key=lambda i: (-len(_padded(texts[i])), i)):
        if texts[row].strip() and not index.containing(texts[row]):
            index.add(texts[row], row)
    return np.sort(np.asarray(index.rows, dtype=np.int64))


def hold_out_sentences(examples, fraction, max_rows, seed):
    """(rest, held): `fraction` of the sentences of `examples` (rows no other
    row contains), at most `max_rows`, drawn at random with `seed`; `rest`
    drops every row that only held-out sentences contain, keeps the file's
    order, and is `examples` itself with `held` None when nothing is held."""
    texts = list(examples.text_a)
    sentences = sentence_rows(texts)
    count = int(round(fraction * len(sentences)))
    if max_rows is not None:
        count = min(count, max_rows)
    if count == 0:
        return examples, None
    held = np.sort(np.random.default_rng(seed).choice(sentences, size=count, replace=False))
    held_set = set(held.tolist())
    kept, dropped = _WordIndex(), _WordIndex()
    for row in sentences:
        (dropped if row in held_set else kept).add(texts[row], row)
    # A row goes only when a held-out sentence holds it and no kept one does.
    keep = [i for i, text in enumerate(texts) if kept.containing(text) or not dropped.containing(text)]
    return examples.select(np.asarray(keep, dtype=np.int64)), examples.select(held)


def _padded(text):
    return f" {' '.join(text.split())} "


class _WordIndex:
    """Texts indexed by their words: which hold a given text, word for word."""

    def __init__(self):
        self.texts, self.rows = [], []
        self._by_word = collections.defaultdict(list)

    def add(self, text, row):
        self.texts.append(_padded(text))
        self.rows.append(row)
        for word in set(text.split()):
            self._by_word[word].append(len(self.texts) - 1)

    def containing(self, text):
        """Whether an indexed text holds `text`: only those sharing its
        rarest word are compared."""
        words = text.split()
        if not words:
            return False
        rarest = min(words, key=lambda w: len(self._by_word.get(w, ())))
        padded = _padded(text)
        return any(padded in self.texts[i] for i in self._by_word.get(rarest, ()))
