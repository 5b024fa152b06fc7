"""Raw sentences in; label, probabilities and exit layer out, by early exit.

```python
trained = load_run("runs/sst2")
predict_texts(trained, ["a gripping film"], default_rule(trained))
# [{"label": "1", "probabilities": [...], "exit_layer": 2}]
# A sentence-pair task (MRPC, RTE, STS-B, ...) takes (text, text_pair) tuples:
predict_texts(load_run("runs/mrpc"), [("He left.", "He went away.")], rule)
```
"""

import numpy as np
from absl import logging

from msbert_tf.data import pipeline
from msbert_tf.data.readers import Examples
from msbert_tf.errors import UserInputError
from msbert_tf.inference.early_exit import EarlyExitPredictor
from msbert_tf.inference.uncertainty import DEFAULT_TOLERANCES, RULES, ExitRule, default_uncertainty


def default_rule(trained, threshold=None, uncertainty=None, top_k=None, patience=None):
    """The run's chosen threshold (exit_threshold.json), with any override."""
    chosen = trained.run.load_threshold()
    if uncertainty and uncertainty not in RULES:
        raise UserInputError(f"uncertainty {uncertainty!r} is not one of {', '.join(RULES)}.")
    kind = uncertainty or chosen.get("uncertainty") or default_uncertainty(trained.task)
    # A setting the rule never reads would be dropped without a word.
    if kind == "patience" and threshold is not None:
        raise UserInputError("the patience rule has no threshold: it exits once exits agree; drop --threshold.")
    if top_k is not None and kind != "topk":
        raise UserInputError(f"--top_k sets the topk rule's K; the {kind} rule does not read it: drop --top_k.")
    if patience is not None and kind != "patience":
        raise UserInputError(
            f"--patience sets the patience rule's count of agreeing exits; the {kind} rule does not read it: "
            "drop --patience."
        )
    setting = ("patience", patience) if kind == "patience" else ("threshold", threshold)
    if uncertainty and chosen and uncertainty != chosen.get("uncertainty") and setting[1] is None:
        raise UserInputError(
            f"the run's setting was chosen for the {chosen.get('uncertainty')} rule; "
            f"with --uncertainty={uncertainty} pass --{setting[0]} as well."
        )
    rule = ExitRule(
        kind=kind,
        threshold=chosen.get("threshold", 0.0) if threshold is None else threshold,
        top_k=top_k if top_k is not None else (chosen.get("top_k") or 2),
        patience=patience if patience is not None else (chosen.get("patience") or 2),
        # Without a chosen point, a regression's values agree within the
        # middle default tolerance (exact equality would never exit early).
        tolerance=(
            chosen["tolerance"] if chosen.get("tolerance") is not None
            else DEFAULT_TOLERANCES[1] if trained.task.regression else 0.0
        ),
        weights=learned_weights(trained, chosen.get("final_exits", 1)) if kind == "learned" else None,
        final_exits=chosen.get("final_exits", 1),
    )
    return rule.validate(trained.classifier.num_labels)


def learned_weights(trained, final_exits=1):
    """The run's learned-rule coefficients fitted against the final
    prediction of `final_exits`, as ExitRule holds them."""
    model = trained.run.load_exit_model()
    fix = f"`python -m msbert_tf.calibrate --run_dir={trained.run.path} --uncertainty=learned` fits it."
    if model is None:
        raise UserInputError(f"{trained.run.path} has no learned exit rule yet: {fix}")
    if str(final_exits) not in model["weights_by_final_exits"]:
        raise UserInputError(f"{trained.run.path} has no learned exit rule for final_exits={final_exits}: {fix}")
    return tuple(tuple(row) for row in model["weights_by_final_exits"][str(final_exits)])


def _checked(text, where):
    if not isinstance(text, str):
        raise UserInputError(f"{where} is {text!r}, not a string: give every example as text.")
    if not text.strip():
        raise UserInputError(f"{where} is empty: give every example some words.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # The shell passed bytes that are not UTF-8 (Python keeps them as surrogates).
        raise UserInputError(f"{where} is not valid UTF-8 text: pass UTF-8 (e.g. with --input_file).") from None
    return text.strip()


def _examples(task, texts):
    """Strings for a one-text task, (text, text_pair) pairs for a pair task."""
    if not task.is_pair:
        for i, text in enumerate(texts):
            if isinstance(text, (tuple, list)):
                raise UserInputError(
                    f"example {i + 1} is {text!r}: task {task.name} takes one text per example, not pairs."
                )
        return Examples(
            text_a=[_checked(t, f"text {i + 1}") for i, t in enumerate(texts)], labels=np.zeros(len(texts), np.int32)
        )
    pairs = []
    for i, item in enumerate(texts):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise UserInputError(
                f"example {i + 1} is {item!r}: task {task.name} classifies sentence pairs, "
                "give each example as two texts (a (text, text_pair) tuple; a tab between them on the command line)."
            )
        pairs.append((_checked(item[0], f"the first text of example {i + 1}"),
                      _checked(item[1], f"the second text of example {i + 1}")))
    return Examples(
        text_a=[a for a, _ in pairs], text_b=[b for _, b in pairs], labels=np.zeros(len(pairs), np.int32)
    )


def from_lines(task, lines):
    """Command-line texts as examples: for a pair task, a tab splits each line
    into (text, text_pair); a line without exactly one tab is refused by
    `predict_texts`, by number."""
    return [tuple(line.split("\t")) for line in lines] if task.is_pair else list(lines)


def predict_texts(trained, texts, rule, batch_size=32):
    """Label, probabilities and exit layer of each of `texts`: strings, or
    (text, text_pair) tuples for a sentence-pair task."""
    rule.validate(trained.classifier.num_labels)
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise UserInputError(f"texts must be a list of strings (or of (text, text_pair) tuples), got {texts!r}.")
    examples = _examples(trained.task, list(texts))
    split = pipeline.encode(examples, trained.preprocessor, name="input")
    if split.num_truncated:
        # Said, not silent: the words past the limit did not count.
        logging.warning(
            "%d of %d text(s) are longer than %d tokens: each was cut to its first %d, and the words after "
            "did not count.", split.num_truncated, len(examples), trained.preprocessor.sequence_length,
            trained.preprocessor.sequence_length,
        )
    predictor = EarlyExitPredictor(trained.classifier)
    names = trained.task.label_names
    results = []
    for features, _ in pipeline.eval_dataset(split, batch_size):
        out = predictor.predict({k: v.numpy() for k, v in features.items()}, rule)
        for probs, prediction, layer in zip(out.probs, out.labels, out.exit_layers):
            results.append(
                {
                    # A regression's label is its predicted value.
                    "label": float(prediction) if trained.task.regression else names[int(prediction)],
                    "probabilities": [round(float(p), 6) for p in probs],
                    "exit_layer": int(layer),
                }
            )
    return results
