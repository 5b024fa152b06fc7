"""MS-BERT against its baselines on one teacher, any task's dev set: table and plot.

    python benchmarks/compare.py --teacher_run=runs/sst2 --output_dir=runs/compare
    python benchmarks/compare.py --teacher_run=runs/trec50 --output_dir=runs/trec50_compare \
        --variants="ms-bert attention sinkhorn,fastbert kl attention" --static_layers= --top_k=2,3,5

Distils every variant below from the teacher of --teacher_run (which must
have finished stage 1), sweeps the exit threshold on dev, adds the patience
rule (and the top-K rule for each --top_k), and fine-tunes the static baselines (the first k layers of the same
checkpoint, trained like the teacher). Writes compare.json, compare.md and
compare.png into --output_dir; every variant is its own resumable run folder,
except one whose heads the teacher run already distilled (same config): those
are loaded from it.
"""

import copy
import json
import os

from absl import app, flags

from msbert_tf import report
from msbert_tf.data import pipeline, readers
from msbert_tf.inference.evaluation import DEFAULT_THRESHOLDS, DEFAULT_TOLERANCES, default_uncertainty, rules_for
from msbert_tf.inference.exit_metrics import exit_metrics
from msbert_tf.inference.sweep import choose_threshold, sweep
from msbert_tf.run_dir import RunDir, write_atomically
from msbert_tf.models.build import build_classifier
from msbert_tf.training.trainer import train

flags.DEFINE_string("teacher_run", None, "Run folder with a finished teacher (stage 1).")
flags.DEFINE_string("output_dir", None, "Where the variants' runs and the comparison go.")
flags.DEFINE_list("variants", None, "Subset of variant names to run (default: all).")
flags.DEFINE_list("static_layers", ["1", "2", "3"], "k of the static first-k-layers baselines.")
flags.DEFINE_list("top_k", [], "Also sweep the top-K rule with these K for every variant.")
flags.DEFINE_list("thresholds", [str(s) for s in DEFAULT_THRESHOLDS], "Exit thresholds swept for every rule but patience.")
flags.DEFINE_alias("speeds", "thresholds")  # the name in BENCHMARKS.md's older commands
flags.DEFINE_bool("table_only", False, "Only rewrite compare.md / .png from --output_dir's compare.json.")
FLAGS = flags.FLAGS

# name -> (head, distill loss, emd solver), in the order they run: the
# comparison is written after each, so a cut-short run still reports.
VARIANTS = {
    "ms-bert attention sinkhorn": ("attention", "emd", "sinkhorn"),
    "fastbert kl attention": ("attention", "kl", "sinkhorn"),
    "deebert ce attention": ("attention", "ce", "sinkhorn"),
    "ms-bert mlp sinkhorn": ("mlp", "emd", "sinkhorn"),
    "fastbert kl mlp": ("mlp", "kl", "sinkhorn"),
    "deebert ce mlp": ("mlp", "ce", "sinkhorn"),
    "ms-bert attention exact": ("attention", "emd", "exact"),
}
DROPS = (0.5, 1.5)
# Speed-ups at which curves are read side by side (best dev metric at or above each).
MATCHED_SPEEDUPS = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)


def best_at(curve, speedup):
    """The best dev metric among a curve's points at FLOPs speed-up `speedup` or more."""
    reached = [p["metric"] for p in curve if p["flops_speedup"] >= speedup]
    return max(reached) if reached else None


def write_comparison(rows, curves, teacher_metric, metric):
    write_atomically(os.path.join(FLAGS.output_dir, "compare.json"),
                     json.dumps({"teacher": teacher_metric, "metric": metric, "rows": rows, "curves": curves}, indent=2))
    report.plot_tradeoff(curves, teacher_metric, os.path.join(FLAGS.output_dir, "compare.png"), metric=metric)
    lines = [f"Teacher dev {metric}: {teacher_metric}", "",
             f"| variant | per-exit dev {metric}, layers 1-L | "
             + " | ".join(f"within {d} pt: FLOPs (L / mean exit layer)" for d in DROPS)
             + " | stage 2 examples/s |",
             "|---|---|" + "---|" * len(DROPS) + "---|"]
    def speedups(curve, layers):
        points = [choose_threshold(curve, teacher_metric, d) for d in DROPS]
        return " | ".join(f"{p['flops_speedup']:.2f}x ({layers / p['mean_exit_layer']:.2f}x)" if p else "-" for p in points)

    for row in rows:
        if "dev" in row:
            layers = len(row["dev"]["exits"])
            lines.append(f"| {row['variant']} | {' / '.join(f'{v:.1f}' for v in row['dev']['exits'])} | "
                         + speedups(curves[row["variant"]], layers)
                         + f" | {row['stages'].get('distill', {}).get('examples_per_second', '-')} |")
            # The other exit rules swept on this variant's heads.
            for name, curve in curves.items():
                if name.startswith(row["variant"] + " top-") or name == f"pabee patience ({row['variant']})":
                    lines.append(f"| {name} | (same heads) | {speedups(curve, layers)} | - |")
        else:
            lines.append(f"| {row['variant']} | {row['dev_metric']:.1f} (all {row['layers']} layers) | "
                         + " | ".join("-" for _ in DROPS) + f" | {row['layer_ratio_speedup']:.2f}x by layers |")
    lines += ["", f"Best dev {metric} at FLOPs speed-up of at least:", "",
              "| curve | " + " | ".join(f"{s}x" for s in MATCHED_SPEEDUPS) + " |",
              "|---|" + "---|" * len(MATCHED_SPEEDUPS)]
    for name, curve in curves.items():
        cells = [best_at(curve, s) for s in MATCHED_SPEEDUPS]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    write_atomically(os.path.join(FLAGS.output_dir, "compare.md"), "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def _variant_run(config, base, name):
    """`(config, run folder)` of a variant: the teacher run itself when it
    already distilled these heads (its config but for teacher_from), so they
    are loaded, not trained a second time; else a folder of its own."""
    reused = copy.deepcopy(config)
    reused.teacher_from = base.teacher_from
    if reused.to_json() == base.to_json() and os.path.exists(RunDir(FLAGS.teacher_run).model_weights):
        return reused, FLAGS.teacher_run
    return config, os.path.join(FLAGS.output_dir, name.replace(" ", "_"))


def main(argv):
    if FLAGS.table_only:
        with open(os.path.join(FLAGS.output_dir, "compare.json")) as f:
            saved = json.load(f)
        return write_comparison(saved["rows"], saved["curves"], saved["teacher"], saved.get("metric", "accuracy"))
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    base = RunDir(FLAGS.teacher_run).load_config()
    task = readers.resolve_task(base.data)
    metric = task.metrics[0]
    if task.regression and FLAGS.top_k:
        raise app.UsageError(f"--top_k needs classes; {task.name} is a regression.")
    thresholds = [float(s) for s in FLAGS.thresholds]
    curves, rows, teacher_metric, full_layers = {}, [], None, None
    for name, (head, loss, solver) in VARIANTS.items():
        if FLAGS.variants and name not in FLAGS.variants:
            continue
        config = copy.deepcopy(base)
        config.model.head, config.distill.loss, config.distill.emd_solver = head, loss, solver
        config.teacher_from = FLAGS.teacher_run
        result = train(*_variant_run(config, base, name))
        per_exit = exit_metrics(result.classifier, result.dev_split, config.data.eval_batch_size, task.metrics)
        teacher_metric, full_layers = per_exit["teacher"], result.classifier.num_layers
        # Regression has one rule, patience within a tolerance: that is its curve.
        main_rule = rules_for(default_uncertainty(task), thresholds, num_layers=full_layers,
                              tolerances=DEFAULT_TOLERANCES)
        curves[name] = sweep(result.classifier, result.dev_split, main_rule, metric=metric)
        for k in map(int, FLAGS.top_k):
            curves[f"{name} top-{k}"] = sweep(
                result.classifier, result.dev_split, rules_for("topk", thresholds, top_k=k), metric=metric
            )
        if name == "fastbert kl attention" and not task.regression:
            curves[f"pabee patience ({name})"] = sweep(
                result.classifier, result.dev_split, rules_for("patience", num_layers=full_layers), metric=metric
            )
        rows.append({"variant": name, "dev": per_exit, "stages": result.stages})
        write_comparison(rows, curves, teacher_metric, metric)
    if full_layers is None and FLAGS.static_layers:
        # No variant ran: the teacher's depth and dev metric from its own weights.
        classifier, preprocessor = build_classifier(base, task)
        classifier.load_weights(RunDir(FLAGS.teacher_run).teacher_weights)
        dev = readers.read_split(task, "dev", base.data.data_dir).take(base.data.max_eval_examples)
        dev_split = pipeline.encode(dev, preprocessor, name=f"{task.name} dev")
        teacher_metric = exit_metrics(classifier, dev_split, base.data.eval_batch_size, task.metrics)["teacher"]
        full_layers = classifier.num_layers
    for k in map(int, FLAGS.static_layers):
        config = copy.deepcopy(base)
        config.model.num_layers, config.distill.epochs = k, 0
        result = train(config, os.path.join(FLAGS.output_dir, f"static_{k}_layers"))
        static = exit_metrics(result.classifier, result.dev_split, config.data.eval_batch_size, task.metrics)["teacher"]
        curves.setdefault("static first-k layers", []).append(
            {"metric": static, "flops_speedup": round(full_layers / k, 3), "threshold": None}
        )
        rows.append({"variant": f"static {k} layers", "dev_metric": static, "layers": k,
                     "layer_ratio_speedup": full_layers / k})
        write_comparison(rows, curves, teacher_metric, metric)


if __name__ == "__main__":
    flags.mark_flags_as_required(["teacher_run", "output_dir"])
    app.run(main)
