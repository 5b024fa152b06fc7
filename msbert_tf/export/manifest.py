"""A LiteRT bundle's fixed names and checksums, shared by the writer
(`bundle`) and the reference runner (`runner`).

```python
sha256("runs/sst2/export/tflite_none/stage_1.tflite")  # as the manifest lists it
```
"""

import hashlib

MANIFEST = "manifest.json"
VOCABULARY = "vocab.txt"
# 2: `exit_rule.final_exits` (the final prediction may be a mean of the last exits).
BUNDLE_VERSION = 2
READABLE_VERSIONS = (1, 2)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
