"""Report files: report.json, report.md (tables) and tradeoff.png (the curve)."""

import json
import os

from msbert_tf.run_dir import write_atomically


def _times(value):
    return "-" if value is None else f"{value:.2f}x"


def _knob(p, named=False):
    """The threshold of a sweep point: uncertainty threshold, patience, or patience and tolerance."""
    if p["uncertainty"] != "patience":
        return f"threshold {p['threshold']}" if named else f"{p['threshold']}"
    knob = f"patience {p['patience']}" if named else f"{p['patience']}"
    return knob if p.get("tolerance") is None else f"{knob}, tolerance {p['tolerance']}"


def _rule(p):
    return f"topk (K={p['top_k']})" if p["uncertainty"] == "topk" else p["uncertainty"]


def _chosen(p):
    """One sweep point in words: `entropy threshold 0.5`, `topk (K=2) threshold 0.3`, `patience 1, tolerance 0.5`."""
    knob = _knob(p, named=True)
    return knob if p["uncertainty"] == "patience" else f"{_rule(p)} {knob}"


def _sweep_table(points, metric):
    lines = [
        f"| rule | threshold / patience | {metric} | mean exit layer | FLOPs speed-up | wall-clock speed-up b1 | b32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {_rule(p)} | {_knob(p)} | {p['metric']:.2f} | {p['mean_exit_layer']:.2f} | "
            f"{p['flops_speedup']:.2f}x | {_times(p.get('wall_clock_speedup_batch1'))} | "
            f"{_times(p.get('wall_clock_speedup_batch32'))} |"
        )
    return lines


def markdown(report):
    metric = report["dev"]["metric"]
    exits = report["dev"]["exits"]
    every = report["dev"].get("all") or {metric: exits}
    lines = [
        f"# {report['task']}: {metric} per exit ({report.get('examples', '?')} examples)",
        "",
        "| exit (layer) | " + " | ".join(str(i + 1) for i in range(len(exits))) + " |",
        "|---" * (len(exits) + 1) + "|",
    ]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |" for name, values in every.items()]
    lines += [
        "",
        f"Teacher (layer {len(exits)}): {report['dev']['teacher']:.2f}",
    ]
    if report.get("final_exits", 1) > 1:
        lines.append(f"Full model (the mean of the last {report['final_exits']} exits, what runs every layer): "
                     f"{report['full_model_metric']:.2f}")
    if report.get("sweep"):
        lines += ["", "## Early exit", ""] + _sweep_table(report["sweep"], metric)
        chosen = report.get("chosen")
        lines += [
            "",
            f"Dev pick (largest FLOPs speed-up within {report['max_drop']} points of the teacher on these "
            "rows; chosen on them, so not certified for new rows): "
            + (
                f"{_chosen(chosen)}, {chosen['metric']:.2f}, "
                f"{chosen['flops_speedup']:.2f}x"
                if chosen
                else "none"
            ),
        ]
        if report.get("oracle_flops_speedup"):
            reached = (
                f"; the dev pick reaches {chosen['fraction_of_oracle']:.0%} of it"
                if chosen and chosen.get("fraction_of_oracle") is not None else ""
            )
            lines += [
                "",
                f"Limit: an oracle exiting each row at the first exit that agrees with the full model "
                f"runs {report['oracle_flops_speedup']:.2f}x fewer FLOPs{reached}.",
            ]
    if report.get("calibration"):
        lines += ["", "## Certified threshold (the default of predict and export)", "",
                  calibration_markdown(report["calibration"])]
    if report.get("stages"):
        lines += ["", "| stage | steps | seconds | examples/s |", "|---|---|---|---|"]
        for stage, stats in report["stages"].items():
            lines.append(
                f"| {stage} | {stats.get('steps', '')} | {stats.get('seconds', '')} | "
                f"{stats.get('examples_per_second', '')} |"
            )
    return "\n".join(lines) + "\n"


def calibration_markdown(record):
    """One certified threshold (`exit_threshold.json`) in words."""
    if not record.get("calibration_rows"):
        return record["summary"]
    return (
        f"{_chosen(record)}, {record['risk']} at most {record['max_risk']:g} with confidence "
        f"{record['confidence']:g}, on {record['rows']}: {record['summary']}"
    )


def tradeoff_lines(curves):
    """{line name: (FLOPs speed-ups, metrics)} in speed-up order, one line per
    curve of `curves` ({label: sweep points}). A regression sweep crosses
    patience with tolerance: it gets one line per tolerance, or the points of
    different tolerances would zig-zag into one."""
    lines = {}
    for label, points in curves.items():
        tolerances = sorted({p.get("tolerance") for p in points}, key=lambda t: (t is not None, t))
        for tolerance in tolerances:
            ordered = sorted((p for p in points if p.get("tolerance") == tolerance), key=lambda p: p["flops_speedup"])
            name = label if len(tolerances) == 1 else f"{label}, tolerance {tolerance}"
            lines[name] = ([p["flops_speedup"] for p in ordered], [p["metric"] for p in ordered])
    return lines


def plot_tradeoff(curves, teacher_metric, path, metric="accuracy"):
    """`curves`: {label: sweep points}; metric against FLOPs speed-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (speedups, metrics) in tradeoff_lines(curves).items():
        ax.plot(speedups, metrics, marker="o", label=name)
    ax.axhline(teacher_metric, color="gray", linestyle="--", label="teacher")
    ax.set_xlabel("FLOPs speed-up over the teacher (x)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(folder, report, prefix="report"):
    os.makedirs(folder, exist_ok=True)
    write_atomically(os.path.join(folder, f"{prefix}.json"), json.dumps(report, indent=2))
    write_atomically(os.path.join(folder, f"{prefix}.md"), markdown(report))
    if report.get("sweep"):
        plot_tradeoff(
            {report["sweep"][0]["uncertainty"]: report["sweep"]},
            report["dev"]["teacher"],
            os.path.join(folder, f"{prefix}_tradeoff.png"),
            metric=report["dev"]["metric"],
        )
