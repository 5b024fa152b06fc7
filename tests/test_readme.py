"""The README's Python example runs as written, on a tiny model: the same
calls, arguments and returned fields, with the preset's training shrunk to
seconds (its backbone, rows and epochs) and its folders moved to a temporary one."""

import os
import re

import pytest

from msbert_tf import RunConfig
from tests.conftest import GLUE_DIR, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_the_readme_python_example_runs(tmp_path, monkeypatch, glue_dir):
    block = next(b for b in _python_blocks() if "MSBert." in b)
    read_preset = RunConfig.from_file

    def shrunk(path):
        config = read_preset(path)  # the preset is read for real: it must exist and parse
        tiny = tiny_config(GLUE_DIR)
        config.model, config.teacher, config.distill.epochs = tiny.model, tiny.teacher, 1.0
        # Its final (the mean of the last 4 exits) shrunk with the 2-layer backbone.
        config.final_exits = tuple(min(k, 2) for k in config.final_exits)
        config.data.max_train_examples, config.data.max_seq_length = 96, 32
        config.jit_compile = False
        return config

    monkeypatch.setattr(RunConfig, "from_file", staticmethod(shrunk))
    monkeypatch.chdir(ROOT)
    code = block.replace('"runs/', f'"{tmp_path}/runs/').replace('"../shared/data/glue', f'"{GLUE_DIR}')
    # Every expression statement's value is kept, so the returned fields can be checked.
    seen = []
    lines = [f"seen.append({line.split('  #')[0].strip()})" if line.startswith(("model.", "MSBert.load"))
             else line.replace("print(", "seen.append(") for line in code.splitlines()]
    exec("\n".join(lines), {"seen": seen})
    summary, default, faster, evaluation, bundles, reloaded = seen
    assert isinstance(summary, str) and summary
    for predictions in (default, faster, reloaded):
        assert len(predictions) == 1 and set(predictions[0]) == {"label", "probabilities", "exit_layer"}
    assert evaluation["examples"] == 872 and evaluation["oracle_flops_speedup"] > 1
    assert sorted(os.path.basename(p) for p in bundles) == ["saved_model", "tflite_none"]
    assert (tmp_path / "runs" / "sst2" / "exit_threshold.json").exists()


def _shell_flags():
    """{command module: flags its README lines pass}, from every bash block."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)
    used = {}
    for line in re.sub(r"\\\n\s*", " ", "\n".join(blocks)).splitlines():
        found = re.search(r"python -m msbert_tf\.([\w.]+)(.*)", line.split("  #")[0])
        if found:
            used.setdefault(found.group(1), set()).update(re.findall(r"--([\w.]+)", found.group(2)))
    return used


def test_the_readme_shell_lines_pass_flags_that_exist():
    import subprocess
    import sys

    used = _shell_flags()
    assert {"train", "evaluate", "predict", "calibrate", "export"} <= set(used)
    for command, names in used.items():
        done = subprocess.run([sys.executable, "-m", f"msbert_tf.{command}", "--helpfull"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        missing = [name for name in names if f"--{name}:" not in done.stdout]
        assert not missing, f"python -m msbert_tf.{command}: README passes {missing}"
