"""The reference on-device runner: what an Android app does, in Python.

Tokenise, run stage 1, check the exit rule, run the next stage only if the
prediction is not yet sure. Uses only the bundle (its manifest, vocabulary
and stage graphs) and the stock LiteRT interpreter, no Flex delegate.

```python
runner = LiteRTRunner("runs/sst2/export/tflite_none", num_threads=2)
runner.classify("a gripping, funny film")
# {"label": "1", "label_id": 1, "probabilities": [...], "exit_layer": 2}
# A pair task's bundle: runner.classify("a man plays", text_pair="a person plays");
# a regression's: {"value": 3.8, "exit_layer": 4}.
```
"""

import dataclasses
import json
import os

import numpy as np

from msbert_tf.errors import UserInputError
from msbert_tf.export import litert
from msbert_tf.export.manifest import MANIFEST, READABLE_VERSIONS, sha256
from msbert_tf.inference.uncertainty import ExitRule


def read_manifest(path):
    manifest_path = os.path.join(path, MANIFEST)
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path} is not an export bundle ({manifest_path}: {e}).") from None
    if manifest.get("format") != "msbert-tf litert bundle" or manifest.get("version") not in READABLE_VERSIONS:
        raise UserInputError(
            f"{manifest_path} is not a version {' or '.join(map(str, READABLE_VERSIONS))} msbert-tf bundle manifest; "
            "export it again."
        )
    checksums = manifest.get("sha256", {})
    unlisted = [s["file"] for s in manifest.get("stages", []) if s["file"] not in checksums]
    if unlisted or not manifest.get("stages"):
        raise UserInputError(f"{manifest_path} lists no stages or no checksum for {unlisted}; export it again.")
    for name, expected in checksums.items():
        file = os.path.join(path, name)
        if not os.path.exists(file) or sha256(file) != expected:
            raise UserInputError(
                f"{file} is missing or does not match its checksum in {MANIFEST}: "
                "the bundle is damaged; export it again."
            )
    # Bundles written before pair and regression export name neither: one text, probabilities.
    manifest.setdefault("inputs", ["text"])
    manifest.setdefault("output", "probabilities")
    return manifest


def tensor_specs(details):
    """{name: {"shape", "dtype"}} of a signature runner's input or output details."""
    return {
        name: {"shape": [int(d) for d in detail["shape_signature"]], "dtype": np.dtype(detail["dtype"]).name}
        for name, detail in sorted(details.items())
    }


def _check_stage(path, entry, stage, output):
    """Refuses a stage graph whose tensors are not the ones its manifest entry names."""
    graph = {"inputs": stage.input_specs, "outputs": stage.output_specs}
    for side in ("inputs", "outputs"):
        if graph[side] != entry.get(side):
            raise UserInputError(
                f"{os.path.join(path, entry['file'])}: its {side} {graph[side]} are not the manifest's "
                f"{entry.get(side)}; the bundle is inconsistent: export it again."
            )
    if output not in graph["outputs"]:
        raise UserInputError(
            f"{os.path.join(path, entry['file'])} has no output {output!r}, which the manifest names; "
            "export the bundle again."
        )


class Stage:
    """One LiteRT graph (a bundle's stage, or any graph with one signature)
    on its own interpreter, called as a signature runner is (`stage(**inputs)`
    -> {output: array}), with the graph's tensor specs (`input_specs`,
    `output_specs`, which the runner checks against its manifest) and the
    interpreter itself at hand, so that a benchmark can time `invoke` apart
    from the rest of a call. `run` and `view` are the runner's own path: the
    chain hands a stage's hidden state to the next stage from the
    interpreter's buffer, copied once, into the next stage's input.

    ```python
    stage = Stage("runs/sst2/export/tflite_none/stage_2.tflite")
    stage(hidden_in=hidden, padding_mask=mask)["probabilities"]
    ```
    """

    def __init__(self, path, num_threads=1):
        self.path = path
        self.interpreter = litert.interpreter(path, num_threads)
        # Not kept: while it holds the interpreter, the interpreter refuses to allocate.
        signature = self.interpreter.get_signature_runner()
        inputs, outputs = signature.get_input_details(), signature.get_output_details()
        self.input_specs, self.output_specs = tensor_specs(inputs), tensor_specs(outputs)
        self._inputs = {name: detail["index"] for name, detail in inputs.items()}
        self._outputs = {name: detail["index"] for name, detail in outputs.items()}
        self._shapes = None

    def __call__(self, **inputs):
        self.run(inputs)
        return {name: self.interpreter.get_tensor(index) for name, index in self._outputs.items()}

    def run(self, inputs):
        """Runs the graph on `inputs` ({name: array}), resizing and
        re-planning only when their shapes differ from the last call's."""
        if inputs.keys() != self._inputs.keys():
            raise UserInputError(f"this graph takes {sorted(self._inputs)}; got {sorted(inputs)}.")
        shapes = [np.shape(inputs[name]) for name in self._inputs]
        if shapes != self._shapes:
            for (name, index), shape in zip(self._inputs.items(), shapes):
                # LiteRT would resize a fixed size too, and a stage given two examples would mix them.
                wanted = self.input_specs[name]["shape"]
                if len(shape) != len(wanted) or any(w not in (-1, n) for w, n in zip(wanted, shape)):
                    raise UserInputError(
                        f"{self.path} takes {name} of shape {wanted} (-1: any size); got {list(shape)}. "
                        "A bundle's stages take one example at a time."
                    )
                self.interpreter.resize_tensor_input(index, shape)
            self.interpreter.allocate_tensors()
            self._shapes = shapes
        for name, index in self._inputs.items():
            self.interpreter.set_tensor(index, inputs[name])
        self.interpreter.invoke()

    def view(self, name):
        """Output `name` of the last `run`, in the interpreter's own buffer:
        valid until this stage runs again."""
        return self.interpreter.tensor(self._outputs[name])()


class LiteRTRunner:
    def __init__(self, path, num_threads=1):
        import keras_hub

        self.manifest = read_manifest(path)
        self.stages = [Stage(os.path.join(path, entry["file"]), num_threads) for entry in self.manifest["stages"]]
        for entry, stage in zip(self.manifest["stages"], self.stages):
            _check_stage(path, entry, stage, self.manifest.get("output"))
        settings = self.manifest["tokenizer"]
        self.settings = settings
        self.tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=os.path.join(path, settings["vocabulary"]),
            lowercase=settings["lowercase"],
            strip_accents=settings["strip_accents"],
        )
        rule = self.manifest["exit_rule"]
        weights = tuple(tuple(row) for row in rule["weights"]) if rule.get("weights") else None
        self.rule = ExitRule(
            rule["uncertainty"], rule["threshold"], rule["top_k"],
            patience=rule.get("patience", 2), tolerance=rule.get("tolerance", 0.0), weights=weights,
            final_exits=rule.get("final_exits", 1),
        )

    @property
    def text_inputs(self):
        """The texts one example takes: ["text"], or ["text", "text_pair"] for a pair task."""
        return self.manifest["inputs"]

    def encode(self, text, text_pair=None):
        """`[CLS] text [SEP]` (a pair: `[CLS] text [SEP] text_pair [SEP]`, segment
        ids 0 then 1), cut to the bundle's max length, as 1 x T int32 arrays."""
        texts = [text] if text_pair is None else [text, text_pair]
        if len(texts) != len(self.text_inputs):
            raise UserInputError(
                f"this bundle's task ({self.manifest['task']}) takes {' and '.join(self.text_inputs)}; "
                f"got {len(texts)} text(s)."
            )
        for name, value in zip(self.text_inputs, texts):
            if not isinstance(value, str) or not value.strip():
                raise UserInputError(f"{name} is empty: give it some words.")
        s = self.settings
        pieces = [[int(i) for i in np.asarray(self.tokenizer(t.strip()))] for t in texts]
        budget = s["max_seq_length"] - 1 - len(pieces)
        if len(pieces) == 1:
            pieces[0] = pieces[0][:budget]
        else:
            # Round robin: one token from each text in turn until the budget is spent.
            first = min(len(pieces[0]), max(budget - len(pieces[1]), (budget + 1) // 2))
            pieces = [pieces[0][:first], pieces[1][: budget - first]]
        ids, segments = [s["cls_token_id"]], [0]
        for segment, piece in enumerate(pieces):
            ids += piece + [s["sep_token_id"]]
            segments += [segment] * (len(piece) + 1)
        ids = np.asarray(ids, np.int32)[None]
        return {"token_ids": ids, "segment_ids": np.asarray(segments, np.int32)[None],
                "padding_mask": np.ones_like(ids)}

    def stage_outputs(self, inputs):
        """Runs the stages in order on one example (1 x T), yielding each exit's
        output (probabilities, or a regression's value); a caller that stops
        iterating runs no further stage."""
        mask = np.asarray(inputs["padding_mask"], np.int32)
        feed = {k: np.asarray(v, np.int32) for k, v in inputs.items()}
        output = self.manifest["output"]
        for stage in self.stages:
            stage.run(feed)
            yield stage.view(output)[0].copy()
            if "hidden" in stage.output_specs:
                # The next stage copies it into its own input: no copy out between.
                feed = {"hidden_in": stage.view("hidden"), "padding_mask": mask}

    def classify_ids(self, inputs, threshold=None, patience=None):
        """Early exit on one example's arrays (1 x T), as the app runs it.
        `threshold` overrides an entropy, topk or learned rule's, `patience`
        the patience rule's."""
        rule = self.rule
        if threshold is not None:
            rule = dataclasses.replace(rule, threshold=threshold)
        if patience is not None:
            rule = dataclasses.replace(rule, patience=patience)
        rule.validate(len(self.manifest["labels"]))
        seen, leaves = [], rule.decider()
        for layer, output in enumerate(self.stage_outputs(inputs)):
            seen.append(output)
            if layer == len(self.stages) - 1:
                output = np.mean(seen[-rule.final_exits:], axis=0)
                break
            if leaves(output):
                break
        if self.manifest["output"] == "value":
            return {"value": float(output[0]), "exit_layer": layer + 1}
        label_id = int(np.argmax(output))
        return {
            "label": self.manifest["labels"][label_id],
            "label_id": label_id,
            "probabilities": output.tolist(),
            "exit_layer": layer + 1,
        }

    def classify(self, text, threshold=None, *, text_pair=None, patience=None):
        return self.classify_ids(self.encode(text, text_pair), threshold, patience)
