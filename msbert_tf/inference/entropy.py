"""Normalised entropies of exit probabilities, the measure of the entropy
and top-K rules (`uncertainty`) and a feature of the learned one.

```python
import numpy as np
entropy(np.array([0.5, 0.5])), top_k_entropy(np.array([0.7, 0.2, 0.1]), k=2)  # (1.0, 0.76)
```
"""

import numpy as np

_TINY = 1e-12


def entropy(probs):
    """Normalised entropy of each row of `probs` (... x N), in [0, 1]."""
    probs = np.asarray(probs, np.float64)
    n = probs.shape[-1]
    # At most 1 in exact arithmetic; the cap keeps rounding from lifting a
    # uniform row above speed 1.
    return np.minimum(-np.sum(probs * np.log(np.maximum(probs, _TINY)), axis=-1) / np.log(n), 1.0)


def top_k_entropy(probs, k):
    """Entropy of the renormalised K largest probabilities, over log K."""
    probs = np.asarray(probs, np.float64)
    top = -np.sort(-probs, axis=-1)[..., :k]
    return entropy(top / np.maximum(top.sum(axis=-1, keepdims=True), _TINY))
