"""The reference on-device runner: what an Android app does, in Python.

Tokenise, run stage 1, check the exit rule, run the next stage only if the
prediction is not yet sure. Uses only the bundle (its manifest, vocabulary
and stage graphs) and the stock LiteRT interpreter, no Flex delegate.

```python
runner = LiteRTRunner("runs/sst2/export/tflite_none", num_threads=2)
runner.classify("a gripping, funny film")
# {"label": "1", "label_id": 1, "probabilities": [...], "exit_layer": 2}
```
"""

import dataclasses
import json
import os

import numpy as np

from msbert_tf.errors import UserInputError
from msbert_tf.export import litert
from msbert_tf.export.manifest import BUNDLE_VERSION, MANIFEST, sha256
from msbert_tf.inference.uncertainty import ExitRule


def read_manifest(path):
    manifest_path = os.path.join(path, MANIFEST)
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path} is not an export bundle ({manifest_path}: {e}).") from None
    if manifest.get("format") != "msbert-tf litert bundle" or manifest.get("version") != BUNDLE_VERSION:
        raise UserInputError(
            f"{manifest_path} is not a version-{BUNDLE_VERSION} msbert-tf bundle manifest; export it again."
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
    return manifest


class LiteRTRunner:
    def __init__(self, path, num_threads=1):
        import keras_hub

        self.manifest = read_manifest(path)
        self.stages = [
            litert.interpreter(os.path.join(path, stage["file"]), num_threads).get_signature_runner()
            for stage in self.manifest["stages"]
        ]
        settings = self.manifest["tokenizer"]
        self.settings = settings
        self.tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=os.path.join(path, settings["vocabulary"]),
            lowercase=settings["lowercase"],
            strip_accents=settings["strip_accents"],
        )
        rule = self.manifest["exit_rule"]
        weights = tuple(tuple(row) for row in rule["weights"]) if rule.get("weights") else None
        self.rule = ExitRule(rule["uncertainty"], rule["threshold"], rule["top_k"], weights=weights)

    def encode(self, text):
        """[CLS] text [SEP], cut to the bundle's max length, as 1 x T int32 arrays."""
        if not isinstance(text, str) or not text.strip():
            raise UserInputError("the text is empty: give it some words.")
        s = self.settings
        pieces = np.asarray(self.tokenizer(text.strip()))[: s["max_seq_length"] - 2]
        ids = np.concatenate([[s["cls_token_id"]], pieces, [s["sep_token_id"]]]).astype(np.int32)[None]
        return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}

    def stage_probabilities(self, inputs):
        """Runs the stages in order on one example (1 x T), yielding each exit's probabilities;
        a caller that stops iterating runs no further stage."""
        mask = np.asarray(inputs["padding_mask"], np.int32)
        feed = {k: np.asarray(v, np.int32) for k, v in inputs.items()}
        for stage in self.stages:
            out = stage(**feed)
            yield out["probabilities"][0]
            if "hidden" in out:
                feed = {"hidden_in": out["hidden"], "padding_mask": mask}

    def classify_ids(self, inputs, threshold=None):
        """Early exit on one example's arrays (1 x T), as the app runs it."""
        rule = self.rule if threshold is None else dataclasses.replace(self.rule, speed=threshold)
        rule.validate(len(self.manifest["labels"]))
        seen = []
        for layer, probs in enumerate(self.stage_probabilities(inputs)):
            seen.append(probs)
            # The learned rule reads every exit so far; the others only the last.
            if layer == len(self.stages) - 1 or rule.uncertainty(np.stack(seen)[None])[0, -1] <= rule.speed:
                break
        label_id = int(np.argmax(probs))
        return {
            "label": self.manifest["labels"][label_id],
            "label_id": label_id,
            "probabilities": probs.tolist(),
            "exit_layer": layer + 1,
        }

    def classify(self, text, threshold=None):
        return self.classify_ids(self.encode(text), threshold)
