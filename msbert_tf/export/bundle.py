"""Writes the deployment bundle of a trained run.

```
OUT/tflite_<quantize>/          one self-contained on-device bundle per mode
    manifest.json               stages, tensors, labels, exit rule, tokenizer, sha256s
    vocab.txt                   the WordPiece vocabulary, one token per line
    stage_1.tflite ... stage_L.tflite
OUT/saved_model/                TF Serving (raw strings in; see serving.py)
```

```python
trained = load_run("runs/sst2")
export_run(trained, "runs/sst2/export", quantize=("none", "dynamic"))
```
"""

import json
import os
import shutil

import numpy as np
from absl import logging

from msbert_tf.errors import UserInputError, as_os_error
from msbert_tf.export import int8, litert, serving, stages
from msbert_tf.export.manifest import BUNDLE_VERSION, MANIFEST, VOCABULARY, sha256
from msbert_tf.export.runner import LiteRTRunner, Stage
from msbert_tf.inference import flops
from msbert_tf.inference.calibration import calibrate, calibration_rows
from msbert_tf.inference.early_exit import EarlyExitPredictor, check_final_exits
from msbert_tf.inference.predict import default_rule
from msbert_tf.run_dir import writable_folder, write_atomically

FORMATS = ("tflite", "saved_model")
# A float32 stage chain must reproduce Keras this closely (checked at export).
FLOAT_TOLERANCE = 1e-4
_PROBE = "exporting checks that this sentence gives the same answer on both sides."
# A quantized bundle whose final prediction is this much less accurate than
# the float model's on the certificate's rows is named in a warning (the
# issue's bound for int8: 0.5 points).
ACCURACY_WARNING = 0.005
# A bundle is written under this suffix, then renamed into place.
PARTIAL = ".partial"


def _check_request(trained, formats, quantize, max_seq_length, rule):
    for name in formats:
        if name not in FORMATS:
            raise UserInputError(f"unknown export format {name!r}: choose from {', '.join(FORMATS)}.")
    for mode in quantize:
        litert.check_quantize(mode)
    rule.validate(trained.classifier.num_labels)
    check_final_exits(rule.final_exits, trained.classifier.num_layers)
    limit = trained.classifier.backbone.max_sequence_length
    if not 2 < max_seq_length <= limit:
        raise UserInputError(
            f"max_seq_length={max_seq_length} is outside what the model takes (3 to {limit}): "
            "lower --max_seq_length."
        )


def _exit_rule(rule):
    # The final prediction: the mean of the outputs of the last `final_exits` stages.
    entry = {"uncertainty": rule.kind, "top_k": rule.top_k, "threshold": rule.threshold,
             "final_exits": rule.final_exits}
    if rule.kind == "patience":
        entry.update(patience=rule.patience, tolerance=rule.tolerance)
    if rule.kind == "learned":
        from msbert_tf.inference.learned_exit import FEATURES

        # One row per exit but the last: the features' coefficients, then the bias.
        entry.update(features=list(FEATURES), weights=[list(row) for row in rule.weights])
    return entry


def _tokenizer_settings(tokenizer, max_seq_length, is_pair):
    return {
        "vocabulary": VOCABULARY,
        "lowercase": bool(tokenizer.lowercase),
        "strip_accents": bool(tokenizer.strip_accents),
        "max_seq_length": int(max_seq_length),
        "cls_token_id": int(tokenizer.cls_token_id),
        "sep_token_id": int(tokenizer.sep_token_id),
        "pad_token_id": int(tokenizer.pad_token_id),
        "unk_token_id": int(tokenizer.token_to_id("[UNK]")),
        # How two texts share max_seq_length (the trainer's packer): one
        # token from each in turn until it is spent.
        **({"truncation": "round_robin"} if is_pair else {}),
    }


def write_litert_bundle(trained, path, quantize, max_seq_length, rule, samples=None):
    """One LiteRT bundle; `samples` (`int8.id_samples`) calibrate `int8`."""
    os.makedirs(path, exist_ok=True)
    tokenizer = trained.preprocessor.tokenizer
    with open(os.path.join(path, VOCABULARY), "w", encoding="utf-8") as f:
        f.write("".join(f"{token}\n" for token in tokenizer.get_vocabulary()))
    stage_entries = []
    graphs = (int8.stage_models(trained.classifier, samples) if quantize == "int8"
              else [(model, None) for model in stages.stage_models(trained.classifier)])
    for index, (model, inputs) in enumerate(graphs):
        name = f"stage_{index + 1}.tflite"
        file = litert.write_litert(model, os.path.join(path, name), quantize, inputs)
        graph = Stage(file)
        stage_entries.append({"file": name, "inputs": graph.input_specs, "outputs": graph.output_specs})
    manifest = {
        "format": "msbert-tf litert bundle",
        "version": BUNDLE_VERSION,
        "task": trained.task.name,
        "labels": list(trained.task.label_names),
        "inputs": text_inputs(trained.task),
        "output": stages.output_name(trained.classifier),
        "quantize": quantize,
        "num_layers": trained.classifier.num_layers,
        "hidden_dim": trained.classifier.backbone.hidden_dim,
        "exit_rule": _exit_rule(rule),
        "tokenizer": _tokenizer_settings(tokenizer, max_seq_length, trained.task.is_pair),
        "stages": stage_entries,
        "sha256": {
            name: sha256(os.path.join(path, name))
            for name in [VOCABULARY] + [entry["file"] for entry in stage_entries]
        },
    }
    write_atomically(os.path.join(path, MANIFEST), json.dumps(manifest, indent=2))
    _self_check(trained, path, quantize)
    if quantize != "none":
        certificate = certify_bundle(trained, path, rule)
        if certificate is not None:
            manifest["exit_rule"]["threshold"] = certificate["threshold"]
            manifest["certificate"] = certificate
            write_atomically(os.path.join(path, MANIFEST), json.dumps(manifest, indent=2))
    return path


def certify_bundle(trained, path, rule):
    """The run's certificate, redone on the outputs of the bundle at `path`.

    A quantized chain's probabilities are not Keras': int8 noise near a
    threshold certified on float32 moves 28% of SST-2's exits (BENCHMARKS.md
    "Which ops int8 leaves in float"), so the guarantee is the float model's,
    not the bundle's. Where `rule` is the run's certified one (a threshold
    rule), the same rows, risk, levels and final certify a threshold for this
    bundle's own chain. Where the rows are labelled, the record gives the
    bundle's final accuracy beside the float model's, and the log warns of
    a loss over `ACCURACY_WARNING`. Returns the record for the manifest, or
    None where there is nothing to redo (no certificate, another threshold,
    patience)."""
    record = trained.run.load_threshold()
    if not (record.get("certified") and rule.kind != "patience" and rule.kind == record.get("uncertainty")
            and rule.threshold == record.get("threshold") and rule.final_exits == record.get("final_exits", 1)):
        return None
    rows = record.get("rows")
    try:
        examples, labelled, where = calibration_rows(trained, rows if rows and os.path.isfile(rows) else None)
    except UserInputError:
        where = None
    if where != rows:
        logging.warning("%s keeps the float model's threshold: the rows it was certified on (%s) are not here.",
                        path.removesuffix(PARTIAL), rows)
        return None
    runner = LiteRTRunner(path)
    texts = zip(examples.text_a, examples.text_b) if examples.text_b is not None else ((t,) for t in examples.text_a)
    encoded = [runner.encode(*pair) for pair in texts]
    # Every exit of the chain, as the app computes them.
    probs = np.asarray([list(runner.stage_outputs(ids)) for ids in encoded])
    lengths = np.asarray([ids["token_ids"].shape[1] for ids in encoded])
    redone = calibrate(
        probs, lengths, flops.model_spec(trained.classifier), record["risk"], record["max_risk"],
        record["confidence"], rule.kind, rule.top_k, examples.labels if labelled else None,
        weights={rule.final_exits: rule.weights} if rule.kind == "learned" else None,
        final_exits=(rule.final_exits,),
    )
    logging.info("%s: threshold %.4g certified on its own outputs (the float model's: %.4g).",
                 path.removesuffix(PARTIAL), redone["threshold"], rule.threshold)
    certificate = {"rows": where, "float_model_threshold": rule.threshold,
                   **{key: redone[key] for key in ("threshold", "certified", "risk", "max_risk", "confidence",
                                                   "calibration_rows", "empirical_risk", "risk_upper_bound",
                                                   "flops_speedup", "final_accuracy") if key in redone}}
    # The certificate bounds disagreement with the bundle's own final, which
    # quantization may have made less accurate than the float model's.
    if "final_accuracy" in certificate and "final_accuracy" in record:
        certificate["float_model_final_accuracy"] = record["final_accuracy"]
        lost = record["final_accuracy"] - certificate["final_accuracy"]
        if lost > ACCURACY_WARNING:
            logging.warning(
                "%s: its final prediction is %.1f points less accurate than the float model's on the %d "
                "rows it was certified on (%.1f%% against %.1f%%): measure it on your own data before shipping it.",
                path.removesuffix(PARTIAL), 100 * lost, redone["calibration_rows"],
                100 * certificate["final_accuracy"], 100 * record["final_accuracy"])
    return certificate


def text_inputs(task):
    """The texts an example of `task` takes, by their names in the bundles."""
    return ["text", "text_pair"] if task.is_pair else ["text"]


def _self_check(trained, path, quantize):
    """Runs the whole chain once and compares it with Keras (FINDINGS 5: NaN traps)."""
    from msbert_tf.inference.uncertainty import ExitRule

    runner = LiteRTRunner(path)
    ids = runner.encode(*[_PROBE] * len(runner.text_inputs))
    got = list(runner.stage_outputs(ids))[-1]
    # Patience of L agreeing exits is never met: every layer runs, for any task.
    full = ExitRule("patience", patience=trained.classifier.num_layers)
    want = EarlyExitPredictor(trained.classifier).predict(ids, full).probs[0]
    diff = float(np.max(np.abs(np.asarray(got) - want)))
    # Checked while still under its temporary name: named as it will be.
    path = path.removesuffix(PARTIAL)
    if not np.all(np.isfinite(got)) or (quantize == "none" and diff > FLOAT_TOLERANCE):
        raise RuntimeError(f"{path}: the exported chain gives {got}, Keras {want.tolist()}.")
    logging.info("%s: teacher probabilities within %.2e of Keras on a probe sentence.", path, diff)


def export_run(trained, output_dir, formats=FORMATS, quantize=("none",), max_seq_length=None, rule=None,
               representative=None):
    """Writes the requested bundles; returns their paths. `representative`
    (`readers.Examples`) calibrates the int8 bundle's activations; by default
    rows of the run's own training data."""
    import keras_hub

    max_seq_length = max_seq_length or trained.config.data.max_seq_length
    rule = rule or default_rule(trained)
    _check_request(trained, formats, quantize, max_seq_length, rule)
    writable_folder(output_dir, "--output_dir")
    paths, samples = [], None
    if "tflite" in formats and "int8" in quantize:
        rows = int8.training_sample(trained) if representative is None else representative
        samples = int8.id_samples(rows, trained.preprocessor)
    if "tflite" in formats:
        for mode in quantize:
            paths.append(_write_folder_atomically(
                os.path.join(output_dir, f"tflite_{mode}"),
                lambda path: write_litert_bundle(trained, path, mode, max_seq_length, rule,
                                                 samples if mode == "int8" else None),
            ))
    if "saved_model" in formats:
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            trained.preprocessor.tokenizer, sequence_length=max_seq_length
        )
        paths.append(_write_folder_atomically(
            os.path.join(output_dir, "saved_model"),
            lambda path: serving.write_saved_model(
                trained.classifier, preprocessor, trained.task.label_names, rule, path, text_inputs(trained.task),
            ),
        ))
    return paths


def _write_folder_atomically(path, write):
    """Builds a bundle under a temporary name beside `path`, then renames it
    into place: a failed or killed export leaves no folder that looks like a
    bundle, and an earlier bundle at `path` stays until the new one is whole."""
    partial = path + PARTIAL
    shutil.rmtree(partial, ignore_errors=True)
    try:
        write(partial)
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        fault = as_os_error(e)
        if fault is None:
            raise
        raise UserInputError(
            f"could not write {path} ({fault.strerror or fault}): free some disk space or pick another "
            "--output_dir, then export again."
        ) from None
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)
    return path

