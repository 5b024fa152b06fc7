"""The embedded MiniLM checkpoint, loaded for real, against references.

The hidden-state check needs PyTorch `transformers` (not a dependency of the
project): it skips where they are absent. Its result on the development
machine is recorded in BENCHMARKS.md.
"""

import numpy as np
import pytest

from msbert_tf.config import ModelConfig
from msbert_tf.models.backbone import embedded_model_dir, load_backbone
from msbert_tf.models.classifier import MSBertClassifier

SENTENCES = [
    "it 's a charming and often affecting journey .",
    "Café crème brûlée, naïve résumé — über cool!",
    "unflinchingly bleak and desperate",
]


@pytest.fixture(scope="module")
def minilm():
    return load_backbone(ModelConfig(), max_seq_length=32)


def test_embedded_checkpoint_loads(minilm):
    backbone, _ = minilm
    assert backbone.count_params() == 22_713_216
    assert backbone.num_layers == 6 and backbone.hidden_dim == 384
    # config.json says "gelu": the exact erf form replaces keras-hub's tanh.
    activation = backbone.transformer_layers[0]._feedforward_intermediate_dense.activation
    assert activation.__name__ == "gelu"
    x = np.array([-1.0, 0.5, 2.0], "float32")
    erf_gelu = 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))
    np.testing.assert_allclose(activation(x), erf_gelu, atol=1e-6)


def test_accents_are_stripped(minilm):
    _, preprocessor = minilm
    ids = np.asarray(preprocessor([SENTENCES[1]])["token_ids"])[0]
    unk = preprocessor.tokenizer.token_to_id("[UNK]")
    assert unk not in ids.tolist()


def test_hidden_states_match_pytorch_reference(minilm):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    backbone, preprocessor = minilm
    folder = embedded_model_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    reference = transformers.BertModel.from_pretrained(folder).eval()
    encoded = tokenizer(SENTENCES, padding="max_length", max_length=32, return_tensors="pt")
    ours = preprocessor(SENTENCES)
    np.testing.assert_array_equal(np.asarray(ours["token_ids"]), encoded["input_ids"].numpy())
    with torch.no_grad():
        expected = reference(**encoded, output_hidden_states=True).hidden_states[1:]
    classifier = MSBertClassifier(backbone, num_labels=2)
    states = classifier.hidden_states(
        {k: np.asarray(v).astype("int32") for k, v in ours.items()}
    )
    mask = encoded["attention_mask"].numpy().astype(bool)
    worst = []
    for layer, (got, want) in enumerate(zip(states, expected), start=1):
        diff = np.abs(np.asarray(got)[mask] - want.numpy()[mask]).max()
        worst.append(diff)
        assert diff < 1e-4, f"layer {layer}: max abs diff {diff}"
    print("max abs diff per layer:", ", ".join(f"{d:.2e}" for d in worst))
