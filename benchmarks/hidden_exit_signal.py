"""Would a richer exit signal lift the learned rule's ceiling? (issues 18 and 19)

    python benchmarks/hidden_exit_signal.py --run_dir=runs/sst2_sent \
        --dev_file=../shared/data/glue/SST-2/dev.tsv --output=hidden.json [--cache=hidden.npz]

The learned rule reads seven features of the exits' probabilities. A pilot
of the next signal: the same logistic model of "this exit agrees with the
final prediction" given, besides those seven, the exit head's internal
vector `z` (what its logits are computed from) or the layer's [CLS]
state (`--models=mlp`: a small MLP per exit on the same inputs instead, is
the linear model the limit?). For a run that holds out whole sentences, each is fitted
label-free on 8,000 training rows, on 8,000 held-out phrases (unseen, used
by nothing else), or on both, at three L2 strengths, for the last exit
alone as the final and for the mean of the last 4. Read: the ceiling, the
largest FLOPs speed-up at which disagreement with the final on all unseen
sentences (held-out sentences and `--dev_file`) is at most 1% (and 0.5%):
no calibration set certifies more with that signal. The ceiling is read on
the rows it is measured on (an upper bound, not a certified number).
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from calibration_splits import FLAGS  # noqa: E402  (its --run_dir, --dev_file and --output are this script's)
from exit_rule_sources import held_out_phrases  # noqa: E402
from machine import commit, machine  # noqa: E402

from msbert_tf.data import pipeline, readers  # noqa: E402
from msbert_tf.inference import flops, learned_exit  # noqa: E402
from msbert_tf.inference.early_exit import exit_outputs, with_final  # noqa: E402
from msbert_tf.inference.loading import load_run  # noqa: E402
from msbert_tf.inference.sweep import flops_speedup  # noqa: E402
from msbert_tf.run_dir import write_atomically  # noqa: E402

flags.DEFINE_string("cache", None, "An .npz of every exit's outputs, z and [CLS] states: read if there, else written.")
flags.DEFINE_integer("phrases", 8000, "Held-out phrases to fit on (a random subset).")
flags.DEFINE_list("models", ["logistic"], "logistic: the learned rule's model on more features; mlp: "
                  "a small MLP per exit (one hidden layer of 32), fitted on training rows and phrases.")

SETS = ("held", "dev", "phrases", "train")


def dump(trained):
    """Every exit's probabilities, heads' z and layers' [CLS] state on each set."""
    held, phrases, train = held_out_phrases(trained)
    dev = readers.read_file(trained.task, FLAGS.dev_file)
    phrases = phrases.select(np.sort(np.random.default_rng(0).permutation(len(phrases))[: FLAGS.phrases]))
    classifier = trained.classifier

    @tf.function
    def step(x):
        states = classifier.hidden_states(x)
        outputs = [classifier.exit_outputs(i, h, x["padding_mask"]) for i, h in enumerate(states)]
        return (tf.stack([s for _, s in outputs], 1), tf.stack([z for z, _ in outputs[:-1]], 1),
                tf.stack([h[:, 0, :] for h in states[:-1]], 1))

    arrays = {}
    for name, examples in zip(SETS, (held, dev, phrases, train)):
        split = pipeline.encode(examples, trained.preprocessor, name=name)
        parts = [step(x) for x, _ in pipeline.eval_dataset(split, 128)]
        logits, z, cls = (np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(3))
        arrays.update({f"{name}_probs": np.asarray(exit_outputs(tf.constant(logits))), f"{name}_z": z,
                       f"{name}_cls": cls.astype(np.float16), f"{name}_lengths": split.lengths})
    return arrays


def features(arrays, name, signal, final_exits):
    """(B x (L - 1) x F features of exits 1..L-1, probabilities with the final)."""
    probs = with_final(arrays[f"{name}_probs"], final_exits)
    parts = [learned_exit.features(probs[:, :-1])]
    parts += [arrays[f"{name}_{extra}"].astype(np.float64) for extra in ("z", "cls") if extra in signal]
    return np.concatenate(parts, -1), probs


def fit(arrays, sources, signal, final_exits, l2):
    x, probs = (np.concatenate(part) for part in zip(*(features(arrays, s, signal, final_exits) for s in sources)))
    labels = probs.argmax(-1)
    return [learned_exit.logistic(x[:, i], (labels[:, i] == labels[:, -1]).astype(np.float64), l2)
            for i in range(probs.shape[1] - 1)]


def mlp_uncertainty(arrays, signal, final_exits, x):
    """1 - P(agree) of each exit on `x` from a small MLP per exit, fitted
    (seeded) on training rows and phrases: is the linear model the limit?"""
    import keras

    fit_x, probs = (np.concatenate(part) for part in
                    zip(*(features(arrays, s, signal, final_exits) for s in ("train", "phrases"))))
    labels = probs.argmax(-1)
    out = []
    for i in range(probs.shape[1] - 1):
        mean, scale = fit_x[:, i].mean(0), fit_x[:, i].std(0) + 1e-9
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((fit_x.shape[-1],)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
        model.fit((fit_x[:, i] - mean) / scale, (labels[:, i] == labels[:, -1]).astype("float32"),
                  batch_size=256, epochs=20, verbose=0)
        out.append(1 - model.predict((x[:, i] - mean) / scale, verbose=0)[:, 0])
    return np.stack(out, 1)


def ceilings(uncertainty, probs, lengths, spec, risks=(0.01, 0.005)):
    """The largest FLOPs speed-up along the rule's thresholds with disagreement at most each risk."""
    last = probs.shape[1] - 1
    final = probs[:, -1].argmax(-1)
    best = dict.fromkeys(risks, 1.0)
    for threshold in np.unique(np.quantile(uncertainty, np.linspace(0, 1, 300))):
        sure = uncertainty <= threshold
        exits = np.where(sure.any(1), sure.argmax(1), last)
        disagreement = np.mean(probs[np.arange(len(probs)), exits].argmax(-1) != final)
        speedup = flops_speedup(exits + 1, lengths, spec)
        for risk in risks:
            if disagreement <= risk:
                best[risk] = max(best[risk], speedup)
    return {str(risk): round(value, 3) for risk, value in best.items()}


def main(argv):
    del argv
    trained = load_run(FLAGS.run_dir)
    if trained.config.data.calibration_source != "held_out_sentences":
        raise SystemExit(f"{FLAGS.run_dir} does not hold out whole sentences (calibration_source).")
    if FLAGS.cache and os.path.exists(FLAGS.cache):
        arrays = dict(np.load(FLAGS.cache))
    else:
        arrays = dump(trained)
        if FLAGS.cache:
            np.savez(FLAGS.cache, **arrays)
    spec = flops.model_spec(trained.classifier)
    lengths = np.concatenate([arrays["held_lengths"], arrays["dev_lengths"]])
    out = {"run_dir": FLAGS.run_dir, "rows": {name: len(arrays[f"{name}_lengths"]) for name in SETS},
           "commit": commit(), "machine": machine(), "ceilings": {}}
    for final_exits in (1, 4):
        for signal in ("probabilities", "z", "cls"):
            x, probs = (np.concatenate(part) for part in
                        zip(*(features(arrays, name, signal, final_exits) for name in ("held", "dev"))))
            if "mlp" in FLAGS.models and signal != "cls":
                key = f"final_exits={final_exits} signal={signal} model=mlp fit=train+phrases"
                out["ceilings"][key] = ceilings(mlp_uncertainty(arrays, signal, final_exits, x), probs, lengths, spec)
                print(key, out["ceilings"][key], flush=True)
            if "logistic" not in FLAGS.models:
                continue
            for sources in (("train",), ("phrases",), ("train", "phrases")):
                for l2 in (1e-2,) if signal == "probabilities" else (1e-2, 1e-3, 1e-4):
                    weights = fit(arrays, sources, signal, final_exits, l2)
                    uncertainty = np.stack([1 / (1 + np.exp(x[:, i] @ w[:-1] + w[-1]))
                                            for i, w in enumerate(weights)], 1)
                    key = f"final_exits={final_exits} signal={signal} fit={'+'.join(sources)} l2={l2}"
                    out["ceilings"][key] = ceilings(uncertainty, probs, lengths, spec)
                    print(key, out["ceilings"][key], flush=True)
    write_atomically(FLAGS.output, json.dumps(out, indent=1))


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir", "dev_file", "output"])
    app.run(main)
