"""Exports a trained run and measures the bundles on SST-2 dev: parity, size, accuracy, latency.

    python benchmarks/export_sst2.py --run_dir=runs/sst2 --output_dir=runs/sst2/export_bench \
        --data_dir=../shared/data/glue [--threshold=0.8] [--formats=saved_model]

- parity: the float32 stage chain against the Keras model on every dev
  sentence (tokenised by the bundle's own vocabulary), over a threshold sweep:
  largest probability difference, exit layers and labels that differ;
- each LiteRT variant: size, agreement of exit layers and labels with the
  float32 chain, dev accuracy at its threshold (a quantized bundle's is
  certified on its own outputs at export) and with all layers, and the
  disagreement with its own final that the threshold bounds;
- batch-1 latency on 1 and 2 threads: the stage chain at its bundle's
  threshold against one full-teacher graph of the same precision, timed in
  alternating passes (--passes; the fastest of each, and the ratio pass
  by pass, as this machine's speed drifts between passes), beside the
  chain's FLOPs speed-up on the same sentences, with its fixed cost per
  stage timed apart: outside the graphs (the runner's Python, resizes,
  copies) and inside them beyond their FLOPs share of the teacher graph's
  time (heads slower than their FLOPs, per-graph dispatch), and the ratio
  of the graphs' own time alone (a native loop's best); and against
  static graphs of the first k layers and exit k of the same checkpoint
  (--static_layers), with their dev accuracy: what a user might ship instead;
- the exit decision's own cost after each stage, in microseconds, for the
  run's rule and, where the run has fitted one, the learned rule (its
  FLOPs, tens per exit, are left out of the FLOPs counts: a layer is
  about 10^8);
- the SavedModel at batch 1 and 32: text in and ids in, each at the default
  threshold and with all layers, against the whole teacher in one TF graph on
  the same ids (the FLOPs ratio's baseline); at batch 1 also each sentence
  through a TF graph of exactly its exit's layers, as if its exit were known
  in advance, and the same with every exit head before its exit, which an
  exit graph must compute to decide: the floor of any exit graph in TF.
Prints the results and writes them, with `lscpu`'s model and flags and the
commit, to export_bench.json in --output_dir.
"""

import dataclasses
import json
import os
import time

import numpy as np
from absl import app, flags
from machine import record

from msbert_tf.data import readers
from msbert_tf.export import int8, litert, stages
from msbert_tf.export.bundle import export_run
from msbert_tf.export.runner import LiteRTRunner, Stage
from msbert_tf.inference import flops
from msbert_tf.inference.early_exit import simulate
from msbert_tf.inference.evaluation import default_thresholds
from msbert_tf.inference.exit_metrics import exit_logits
from msbert_tf.inference.metrics import score
from msbert_tf.inference.loading import load_run
from msbert_tf.inference.predict import default_rule
from msbert_tf.inference.sweep import flops_speedup
from msbert_tf.inference.uncertainty import ExitRule

flags.DEFINE_string("run_dir", None, "A finished training run.")
flags.DEFINE_string("output_dir", None, "Where the bundles and the results go.")
flags.DEFINE_string("data_dir", None, "GLUE-layout folder with SST-2/dev.tsv.")
flags.DEFINE_float("threshold", None, "Default threshold (default: the run's chosen one).")
flags.DEFINE_list("formats", ["tflite", "saved_model"], "What to export and measure, as export's --formats.")
flags.DEFINE_list("quantize", ["none", "dynamic", "float16", "int8"], "Variants to build.")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts to time.")
flags.DEFINE_integer("max_examples", None, "Use only the first N dev rows.")
flags.DEFINE_list("static_layers", ["1", "2", "3"], "Static first-k-layer graphs to time beside the chain.")
flags.DEFINE_integer("passes", 3, "Timed passes over the sentences; chain and teacher graph alternate "
                     "pass by pass, and each graph's fastest pass is reported.")
FLAGS = flags.FLAGS

def decision_us(trained, rule, probs):
    """Microseconds the runner's exit decision (`ExitRule.decider`) takes
    after a stage, for the run's rule and, where the run has one, the learned
    rule: each stage but the last of every dev sentence, a decider per sentence."""
    rules = {rule.kind: rule}
    model = trained.run.load_exit_model()
    if model is not None and rule.kind != "learned":
        rules["learned"] = ExitRule("learned", rule.threshold, weights=tuple(map(tuple, model["weights_by_final_exits"]["1"])))
    out = {}
    for kind, each in rules.items():
        start = time.perf_counter()
        for sentence in probs:
            leaves = each.decider()
            for output in sentence[:-1]:
                leaves(output)
        out[kind] = round(1e6 * (time.perf_counter() - start) / (len(probs) * (probs.shape[1] - 1)), 2)
    return out


class InvokeClock:
    """Milliseconds `stage`'s interpreter spends inside its graph, summed over
    its calls (`timed_outputs` zeroes it after the warm-up)."""

    def __init__(self, stage):
        self.ms, invoke = 0.0, stage.interpreter.invoke

        def timed():
            start = time.perf_counter()
            invoke()
            self.ms += 1000.0 * (time.perf_counter() - start)

        stage.interpreter.invoke = timed


def interleaved(runs, encoded, passes):
    """Times each of `runs` ({name: (run, clocks)}) over `encoded`, one
    example at a time, a pass of each in turn, `passes` times: the graphs
    compared see the same state of the machine, whose speed drifts between
    passes by more than the differences measured. Returns {name: {"ms":
    [per pass], "invoke_ms": [per pass], "outputs": of the last pass}}, times
    per example."""
    for run, _ in runs.values():
        for ids in encoded[:20]:  # warm-up: allocation, delegate set-up
            run(ids)
    timed = {name: {"ms": [], "invoke_ms": []} for name in runs}
    for _ in range(passes):
        for name, (run, clocks) in runs.items():
            for clock in clocks:
                clock.ms = 0.0
            start = time.perf_counter()
            timed[name]["outputs"] = [run(ids) for ids in encoded]
            timed[name]["ms"].append(1000.0 * (time.perf_counter() - start) / len(encoded))
            timed[name]["invoke_ms"].append(sum(clock.ms for clock in clocks) / len(encoded))
    return timed


def flops_ratios(teacher_ms, chain_ms, flops_gain):
    """Wall / FLOPs speed-up of a chain against the teacher graph, from
    their ms per pass (timed in alternating passes): of each graph's fastest
    pass, and pass by pass."""
    return {"of_flops": round(min(teacher_ms) / min(chain_ms) / flops_gain, 3),
            "of_flops_by_pass": [round(t / c / flops_gain, 3) for t, c in zip(teacher_ms, chain_ms)]}


def best_ms(run, encoded, passes):
    """(ms per example of the fastest of `passes` passes, outputs) of `run` over `encoded`."""
    timed = interleaved({"run": (run, ())}, encoded, passes)["run"]
    return min(timed["ms"]), timed["outputs"]


def saved_model_ms(path, trained, texts, batch_size, threshold):
    """The SavedModel's ms per batch (each call's fastest pass, all in
    alternating passes) over `texts`: `classify` (text in, tokenised in the
    graph) at `threshold` and with every layer (threshold 0: the exit graph's
    own machinery still runs after each layer), `classify_ids` (ids in, as the
    LiteRT graphs are timed) at `threshold` and at 0, and the whole teacher in one TF
    graph on the same ids (no exit heads, no decisions: what the FLOPs ratio
    is read against); at batch 1, each sentence through the graph of exactly
    its exit's layers, without and with the exit heads before it. Returns ({name: ms of each pass}, exit layers of `classify_ids`)."""
    import tensorflow as tf

    model = tf.saved_model.load(path)
    classify, classify_ids = model.signatures["classify"], model.signatures["classify_ids"]
    spec = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in stages.ID_INPUTS}
    classifier = trained.classifier

    def first_layers(count, every_exit=False):
        """The first `count` layers and exit `count` in one TF graph;
        `every_exit`: every exit up to `count`, as an exit graph computes them."""
        def logits(ids):
            hidden, exits = classifier.embed(ids), []
            for index in range(count):
                hidden = classifier.transformer_layer(index, hidden, ids["padding_mask"])
                if every_exit or index == count - 1:
                    exits.append(classifier.exit_outputs(index, hidden, ids["padding_mask"])[1])
            return exits

        return tf.function(logits, input_signature=[spec])

    teacher = first_layers(classifier.num_layers)
    text_batches = [tf.constant(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    id_batches = []
    for batch in text_batches:
        ids = {k: np.asarray(v).astype(np.int32) for k, v in trained.preprocessor(batch).items()}
        # Cut to the batch's longest row, as the exit graph cuts its own input.
        width = int(ids["padding_mask"].sum(axis=1).max())
        id_batches.append({k: tf.constant(v[:, :width]) for k, v in ids.items()})
    at = {t: tf.constant(t, tf.float64) for t in (threshold, 0.0)}
    runs = {
        "classify_text": (lambda i: classify(text=text_batches[i], threshold=at[threshold]), ()),
        "classify_text_all_layers": (lambda i: classify(text=text_batches[i], threshold=at[0.0]), ()),
        "classify_ids": (lambda i: classify_ids(**id_batches[i], threshold=at[threshold]), ()),
        "classify_ids_all_layers": (lambda i: classify_ids(**id_batches[i], threshold=at[0.0]), ()),
        "teacher_graph": (lambda i: teacher(id_batches[i]), ()),
    }
    if batch_size == 1:
        # Each sentence through the graph of exactly its exit's layers: the
        # same work with no decision or control flow, the floor of any exit
        # graph; with every exit head on the way too, the floor of one that
        # reads its exits (the FLOPs speed-up counts those heads).
        known = [int(classify_ids(**ids, threshold=at[threshold])["exit_layer"][0]) for ids in id_batches]
        for name, every_exit in (("exits_known_in_advance", False), ("exits_known_with_heads", True)):
            graphs = {count: first_layers(count, every_exit) for count in set(known)}
            for count, graph in graphs.items():  # traced before the clock runs: rare depths may miss the warm-up
                graph(id_batches[known.index(count)])
            runs[name] = (lambda i, graphs=graphs: graphs[known[i]](id_batches[i]), ())
    timed = interleaved(runs, list(range(len(text_batches))), FLAGS.passes)
    exits = np.concatenate([np.asarray(out["exit_layer"]) for out in timed["classify_ids"]["outputs"]])
    return {name: t["ms"] for name, t in timed.items()}, exits


def main(argv):
    trained = load_run(FLAGS.run_dir)
    rule = default_rule(trained, FLAGS.threshold)
    dev = readers.read_split(trained.task, "dev", FLAGS.data_dir).take(FLAGS.max_examples)
    export_run(trained, FLAGS.output_dir, formats=FLAGS.formats, quantize=FLAGS.quantize, rule=rule)
    results = {"run_dir": FLAGS.run_dir, "examples": len(dev), "threshold": rule.threshold, "uncertainty": rule.kind}
    spec = flops.model_spec(trained.classifier)
    keras_ids = trained.preprocessor(list(dev.text_a))
    # Each sentence's own length, as the bundles' runner encodes it (`token_ids_identical`).
    lengths = np.asarray(keras_ids["padding_mask"]).sum(axis=1)
    if "tflite" in FLAGS.formats:
        results.update(litert_results(trained, rule, dev, spec, lengths, keras_ids["token_ids"]))
    if "saved_model" in FLAGS.formats:
        results["saved_model_ms_per_batch"] = saved_model_results(trained, rule, dev, spec, lengths)
    record(results, os.path.join(FLAGS.output_dir, "export_bench.json"))
    print(json.dumps(results, indent=2))


def litert_results(trained, rule, dev, spec, lengths, keras_ids):
    """Parity, size, accuracy and batch-1 latency of the LiteRT bundles (the
    module docstring); `keras_ids`: the trainer's token ids of `dev`."""
    import keras

    results = {}
    float_runner = LiteRTRunner(os.path.join(FLAGS.output_dir, "tflite_none"))
    encoded = [float_runner.encode(t) for t in dev.text_a]
    results["token_ids_identical"] = int(sum(
        np.array_equal(e["token_ids"][0], np.asarray(k)[: e["token_ids"].shape[1]]) for e, k in zip(encoded, keras_ids)
    ))
    from msbert_tf.data import pipeline

    split = pipeline.encode(dev, trained.preprocessor, name="sst2 dev")
    keras_probs = np.asarray(keras.ops.softmax(exit_logits(trained.classifier, split, 64), axis=-1))
    chains, rules = {}, {}
    for mode in FLAGS.quantize:
        runner = LiteRTRunner(os.path.join(FLAGS.output_dir, f"tflite_{mode}"))
        # E x L x N: every stage of the chain, one example at a time.
        chains[mode] = np.asarray([list(runner.stage_outputs(ids)) for ids in encoded])
        # A quantized bundle's threshold is certified on its own outputs (its manifest's).
        rules[mode] = runner.rule
    float_probs = chains.get("none", keras_probs)
    # The sweep's thresholds on the rule's own scale: the learned rule's lie near 0.
    sweep = default_thresholds(rule.kind)
    pairs = [
        [simulate(p, dataclasses.replace(rule, threshold=threshold)) for p in (float_probs, keras_probs)]
        for threshold in sweep
    ]
    results["parity"] = {
        "max_abs_probability_diff": float(np.max(np.abs(float_probs - keras_probs))),
        "thresholds": list(sweep),
        "exit_layers_differing": sum(int(np.sum(a.exit_layers != b.exit_layers)) for a, b in pairs),
        "labels_differing": sum(int(np.sum(a.labels != b.labels)) for a, b in pairs),
    }
    variants = {}
    for mode, probs in chains.items():
        folder = os.path.join(FLAGS.output_dir, f"tflite_{mode}")
        at_default, reference = simulate(probs, rules[mode]), simulate(float_probs, rule)
        variants[mode] = {
            "threshold": rules[mode].threshold,
            "bundle_mb": round(sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 2**20, 2),
            "accuracy_default_threshold": score("accuracy", dev.labels, at_default.labels),
            "accuracy_all_layers": score("accuracy", dev.labels, probs[:, -1].argmax(-1)),
            "mean_exit_layer": round(float(at_default.exit_layers.mean()), 3),
            "exit_layer_agreement": round(float(np.mean(at_default.exit_layers == reference.exit_layers)), 4),
            "label_agreement": round(float(np.mean(at_default.labels == reference.labels)), 4),
            # What the threshold was certified to bound, read on this bundle's own outputs.
            "disagreement_with_own_final": round(float(np.mean(
                at_default.labels != simulate(probs, dataclasses.replace(rules[mode], threshold=0.0)).labels)), 4),
        }
    results["variants"] = variants

    # The whole-teacher and first-k-layer int8 graphs calibrate on the rows
    # the bundle's first stage did, their feed-forward outliers apart as there.
    id_samples = int8.id_samples(int8.training_sample(trained), trained.preprocessor) if "int8" in FLAGS.quantize else None
    outliers = int8.outliers(trained.classifier, id_samples) if id_samples else None
    latency = []
    for mode in FLAGS.quantize:
        teacher_path = os.path.join(FLAGS.output_dir, f"teacher_{mode}.tflite")
        litert.write_litert(stages.full_model(trained.classifier, outliers if mode == "int8" else None),
                            teacher_path, mode, id_samples)
        for threads in map(int, FLAGS.threads):
            runner = LiteRTRunner(os.path.join(FLAGS.output_dir, f"tflite_{mode}"), num_threads=threads)
            teacher = Stage(teacher_path, threads)
            timed = interleaved({
                "chain": (runner.classify_ids, [InvokeClock(stage) for stage in runner.stages]),
                "teacher": (lambda ids: teacher(**ids), [InvokeClock(teacher)]),
            }, encoded, FLAGS.passes)
            exits = np.asarray([out["exit_layer"] for out in timed["chain"]["outputs"]])
            flops_gain = flops_speedup(exits, lengths, spec)
            # Each graph's fastest pass.
            best = {name: int(np.argmin(t["ms"])) for name, t in timed.items()}
            chain_ms, full_ms = (timed[name]["ms"][best[name]] for name in ("chain", "teacher"))
            chain_invoke, teacher_invoke = (timed[name]["invoke_ms"][best[name]] for name in ("chain", "teacher"))
            latency.append({
                "quantize": mode, "threads": threads, "chain_ms": round(chain_ms, 3),
                "full_teacher_ms": round(full_ms, 3), "speedup": round(full_ms / chain_ms, 2),
                "flops_speedup": round(flops_gain, 3),
                **flops_ratios(timed["teacher"]["ms"], timed["chain"]["ms"], flops_gain),
                "mean_stages": round(float(exits.mean()), 3),
                # Per stage run: time outside the graphs, and inside them beyond the
                # FLOPs share of the teacher graph's own time.
                "outside_graphs_ms_per_stage": round((chain_ms - chain_invoke) / exits.mean(), 4),
                "inside_beyond_flops_ms_per_stage": round(
                    (chain_invoke - teacher_invoke / flops_gain) / exits.mean(), 4),
                "teacher_outside_graph_ms": round(full_ms - teacher_invoke, 4),
                # The graphs' own time alone (no runner, resize or re-plan): a native loop's best.
                "graphs_alone_of_flops": round(teacher_invoke / chain_invoke / flops_gain, 3),
            })
    results["litert_latency_batch1"] = latency
    results["decision_us_per_stage"] = decision_us(trained, rule, float_probs)
    static = []
    for mode in [m for m in ("none", "dynamic", "int8") if m in FLAGS.quantize]:
        for count in map(int, FLAGS.static_layers):
            path = os.path.join(FLAGS.output_dir, f"first_{count}_layers_{mode}.tflite")
            litert.write_litert(stages.first_layers_model(trained.classifier, count, outliers if mode == "int8" else None),
                                path, mode, id_samples)
            for threads in map(int, FLAGS.threads):
                graph = Stage(path, threads)
                ms, outputs = best_ms(lambda ids: graph(**ids)["probabilities"][0], encoded, FLAGS.passes)
                static.append({"quantize": mode, "threads": threads, "layers": count, "ms": round(ms, 3),
                               "accuracy": score("accuracy", dev.labels, np.argmax(outputs, axis=-1))})
    results["static_layers_batch1"] = static
    return results


def saved_model_results(trained, rule, dev, spec, lengths):
    """The SavedModel at batch 1 and 32 against the whole teacher in TF (`saved_model_ms`)."""
    sm = os.path.join(FLAGS.output_dir, "saved_model")
    saved = []
    for batch_size in (1, 32):
        ms, exits = saved_model_ms(sm, trained, list(dev.text_a), batch_size, rule.threshold)
        # Per sentence, at its own length: a batch pads to its longest row, which this leaves out.
        flops_gain = flops_speedup(exits, lengths, spec)
        saved.append({"batch": batch_size, "threshold": rule.threshold,
                      "ms": {k: round(min(v), 2) for k, v in ms.items()},
                      "mean_exit_layer": round(float(exits.mean()), 3), "flops_speedup": round(flops_gain, 3),
                      **flops_ratios(ms["teacher_graph"], ms["classify_ids"], flops_gain)})
        for name in ("exits_known_in_advance", "exits_known_with_heads"):
            if name in ms:
                saved[-1][name] = flops_ratios(ms["teacher_graph"], ms[name], flops_gain)
    return saved


if __name__ == "__main__":
    app.run(main)
