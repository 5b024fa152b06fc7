"""FLOPs of the path an example takes, counted analytically.

A multiply-add counts 2 FLOPs. Counted: the matrix products of each
executed transformer layer at the example's real length T (Q, K, V and
output projections, attention scores and context, feed-forward), and of
each evaluated exit. Left out, as small against those: embedding look-ups,
layer norms, softmax, GELU, biases.

```python
layer_flops(length=10, hidden=384, intermediate=1536)  # one MiniLM layer
```
"""

from msbert_tf.config import BLOCK_FEED_FORWARD_RATIO


def layer_flops(length, hidden, intermediate):
    projections = 4 * 2 * length * hidden * hidden  # Q, K, V, output
    attention = 2 * 2 * length * length * hidden  # scores and context
    feed_forward = 2 * 2 * length * hidden * intermediate
    return projections + attention + feed_forward


def head_flops(kind, length, hidden, head_dim, num_labels, depth=1, num_heads=2):
    """FLOPs of one student head on a sequence of `length` tokens."""
    if kind == "mlp":
        return 2 * hidden * head_dim + (depth - 1) * 2 * head_dim * head_dim + 2 * head_dim * num_labels
    if depth == 1:
        # As `AttentionExitHead._cls_attention` computes it: [CLS]'s projection
        # and queries; per attention head a direction in the hidden space,
        # scores and a weighted mean of the tokens, that mean projected; the
        # value and output projections and the two dense layers.
        per_head = 2 * hidden * head_dim + 2 * 2 * length * hidden + 2 * hidden * head_dim
        return 2 * hidden * head_dim + num_heads * per_head + 5 * 2 * head_dim * head_dim + 2 * head_dim * num_labels
    project = 2 * length * hidden * head_dim
    # A deeper head's blocks are transformer layers of width head_dim.
    blocks = (depth - 1) * layer_flops(length, head_dim, BLOCK_FEED_FORWARD_RATIO * head_dim)
    # [CLS] is the only query: its projection, K and V of every token,
    # scores and context of one row, the output projection.
    attention = 2 * head_dim * head_dim + 2 * 2 * length * head_dim * head_dim
    attention += 2 * 2 * length * head_dim + 2 * head_dim * head_dim
    return project + blocks + attention + 2 * head_dim * head_dim + 2 * head_dim * num_labels


def teacher_head_flops(hidden, num_labels):
    return 2 * hidden * hidden + 2 * hidden * num_labels


def path_flops(exit_layer, length, spec):
    """FLOPs to reach and evaluate exit `exit_layer` (1-based), all exits before it included.

    `spec`: dict with `num_layers`, `hidden`, `intermediate`, `head`,
    `head_dim`, `head_depth`, `head_num_heads`, `num_labels` (see `model_spec`).
    """
    total = exit_layer * layer_flops(length, spec["hidden"], spec["intermediate"])
    students = min(exit_layer, spec["num_layers"] - 1)
    total += students * head_flops(
        spec["head"], length, spec["hidden"], spec["head_dim"], spec["num_labels"], spec["head_depth"],
        spec["head_num_heads"],
    )
    if exit_layer == spec["num_layers"]:
        total += teacher_head_flops(spec["hidden"], spec["num_labels"])
    return total


def teacher_flops(length, spec):
    """The full teacher alone: every layer and C_T, no student heads."""
    return spec["num_layers"] * layer_flops(
        length, spec["hidden"], spec["intermediate"]
    ) + teacher_head_flops(spec["hidden"], spec["num_labels"])


def model_spec(classifier):
    backbone = classifier.backbone
    return {
        "num_layers": backbone.num_layers,
        "hidden": backbone.hidden_dim,
        "intermediate": backbone.intermediate_dim,
        "head": classifier.head,
        "head_dim": classifier.head_dim,
        "head_depth": classifier.head_depth,
        "head_num_heads": classifier.head_num_heads,
        "num_labels": classifier.num_labels,
    }
