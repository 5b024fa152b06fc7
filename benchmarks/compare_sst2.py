"""MS-BERT against its baselines on one teacher, SST-2 dev: table and plot.

    python benchmarks/compare_sst2.py --teacher_run=runs/sst2 --output_dir=runs/compare

Distils every variant below from the teacher of --teacher_run (which must
have finished stage 1), sweeps the exit threshold on dev, adds the patience
rule, and fine-tunes the static baselines (the first k layers of the same
checkpoint, trained like the teacher). Writes compare.json, compare.md and
compare.png into --output_dir; every variant is its own resumable run folder.
"""

import copy
import json
import os

from absl import app, flags

from msbert_tf import report
from msbert_tf.inference.evaluation import DEFAULT_SPEEDS, rules_for
from msbert_tf.inference.exit_metrics import exit_metrics
from msbert_tf.inference.sweep import choose_speed, sweep
from msbert_tf.training.run_dir import RunDir, write_atomically
from msbert_tf.training.trainer import train

flags.DEFINE_string("teacher_run", None, "Run folder with a finished teacher (stage 1).")
flags.DEFINE_string("output_dir", None, "Where the variants' runs and the comparison go.")
flags.DEFINE_list("variants", None, "Subset of variant names to run (default: all).")
flags.DEFINE_list("static_layers", ["1", "2", "3"], "k of the static first-k-layers baselines.")
flags.DEFINE_float("max_drop", 0.5, "Metric drop for the chosen point.")
FLAGS = flags.FLAGS

# name -> (head, distill loss, emd solver)
VARIANTS = {
    "ms-bert attention sinkhorn": ("attention", "emd", "sinkhorn"),
    "ms-bert attention exact": ("attention", "emd", "exact"),
    "ms-bert mlp sinkhorn": ("mlp", "emd", "sinkhorn"),
    "fastbert kl attention": ("attention", "kl", "sinkhorn"),
    "fastbert kl mlp": ("mlp", "kl", "sinkhorn"),
    "deebert ce attention": ("attention", "ce", "sinkhorn"),
    "deebert ce mlp": ("mlp", "ce", "sinkhorn"),
}


def main(argv):
    base = RunDir(FLAGS.teacher_run).load_config()
    curves, rows, teacher_metric, full_layers = {}, [], None, None
    for name, (head, loss, solver) in VARIANTS.items():
        if FLAGS.variants and name not in FLAGS.variants:
            continue
        config = copy.deepcopy(base)
        config.model.head, config.distill.loss, config.distill.emd_solver = head, loss, solver
        config.teacher_from = FLAGS.teacher_run
        result = train(config, os.path.join(FLAGS.output_dir, name.replace(" ", "_")))
        per_exit = exit_metrics(result.classifier, result.dev_split, config.data.eval_batch_size)
        teacher_metric, full_layers = per_exit["teacher"], result.classifier.num_layers
        rules = rules_for("entropy", DEFAULT_SPEEDS)
        curves[name] = sweep(result.classifier, result.dev_split, rules)
        if name.startswith("fastbert kl attention"):
            curves["pabee patience (kl attention)"] = sweep(
                result.classifier, result.dev_split, rules_for("patience", num_layers=result.classifier.num_layers)
            )
        rows.append({"variant": name, "dev": per_exit, "stages": result.stages,
                     "chosen": choose_speed(curves[name], teacher_metric, FLAGS.max_drop)})
    for k in map(int, FLAGS.static_layers):
        config = copy.deepcopy(base)
        config.model.num_layers, config.distill.epochs = k, 0
        result = train(config, os.path.join(FLAGS.output_dir, f"static_{k}_layers"))
        metric = exit_metrics(result.classifier, result.dev_split, config.data.eval_batch_size)["teacher"]
        speedup = full_layers / k
        curves.setdefault("static first-k layers", []).append(
            {"metric": metric, "flops_speedup": round(speedup, 3), "speed": None}
        )
        rows.append({"variant": f"static {k} layers", "dev_metric": metric, "layer_ratio_speedup": speedup})
    write_atomically(os.path.join(FLAGS.output_dir, "compare.json"), json.dumps({"rows": rows, "curves": curves}, indent=2))
    report.plot_tradeoff(curves, teacher_metric, os.path.join(FLAGS.output_dir, "compare.png"))
    lines = ["| variant | per-exit dev accuracy | chosen speed | accuracy | FLOPs speed-up |", "|---|---|---|---|---|"]
    for row in rows:
        if "dev" in row:
            c = row["chosen"] or {}
            lines.append(
                f"| {row['variant']} | {' / '.join(f'{v:.1f}' for v in row['dev']['exits'])} | "
                f"{c.get('speed', '-')} | {c.get('metric', '-')} | {c.get('flops_speedup', '-')} |"
            )
        else:
            lines.append(f"| {row['variant']} | {row['dev_metric']:.1f} | - | - | {row['layer_ratio_speedup']:.2f} (layers) |")
    write_atomically(os.path.join(FLAGS.output_dir, "compare.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    flags.mark_flags_as_required(["teacher_run", "output_dir"])
    app.run(main)
