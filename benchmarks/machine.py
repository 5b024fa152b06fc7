"""What a benchmark records beside its numbers: the machine and the commit.

Machines of this project differ by 2x in absolute time and far more in int8
(AVX-512 VNNI or not), so every figure carries `lscpu`'s model and the
flags that decide it.

```python
machine()  # {"platform": "Linux-...", "cpu": "AMD EPYC (avx2 avx512f avx512_vnni avx512_bf16)"}
record({"accuracy": 88.3}, "out.json")  # adds both, writes the JSON atomically
```
"""

import json
import os
import platform
import subprocess

FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")


def machine():
    return {"platform": platform.platform(), "cpu": cpu()}


def record(results, output):
    """Adds the machine and the commit to `results` and, where `output` names
    a file, writes them there as JSON, atomically."""
    from msbert_tf.run_dir import write_atomically

    results["machine"], results["commit"] = machine(), commit()
    if output:
        write_atomically(output, json.dumps(results, indent=2))
    return results


def commit():
    """The checkout's short commit, or "unknown": a missing git must not lose a run's numbers."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def cpu():
    """`lscpu`'s model name and which of `FLAGS_THAT_MATTER` it has."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "unknown")
    flag_line = next((line for line in lines if line.startswith("Flags")), "")
    return f"{model} ({' '.join(f for f in FLAGS_THAT_MATTER if f in flag_line.split())})"
