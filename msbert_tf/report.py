"""report.json and report.md in the run folder."""

import json
import os

from msbert_tf.training.run_dir import write_atomically


def markdown(report):
    metric = report["dev"]["metric"]
    lines = [
        f"# {report['task']}: dev {metric} per exit",
        "",
        "| exit (layer) | " + " | ".join(str(i + 1) for i in range(len(report["dev"]["exits"]))) + " |",
        "|---" * (len(report["dev"]["exits"]) + 1) + "|",
        f"| {metric} | " + " | ".join(f"{v:.2f}" for v in report["dev"]["exits"]) + " |",
        "",
        f"Teacher (layer {len(report['dev']['exits'])}): {report['dev']['teacher']:.2f}",
        "",
        "| stage | steps | seconds | examples/s |",
        "|---|---|---|---|",
    ]
    for stage, stats in report["stages"].items():
        lines.append(
            f"| {stage} | {stats.get('steps', '')} | {stats.get('seconds', '')} | "
            f"{stats.get('examples_per_second', '')} |"
        )
    return "\n".join(lines) + "\n"


def write_report(run_path, report):
    write_atomically(os.path.join(run_path, "report.json"), json.dumps(report, indent=2))
    write_atomically(os.path.join(run_path, "report.md"), markdown(report))
