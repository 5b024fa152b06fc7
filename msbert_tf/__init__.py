"""msbert-tf: MS-BERT early-exit BERT classifiers for Keras / TensorFlow.

```python
from msbert_tf import MSBert
model = MSBert("runs/sst2", task="sst2", data_dir="../shared/data/glue").fit()
model.predict(["a gripping, funny film"], threshold=0.3)
```
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import msbert_tf` (and the CLIs' --help) does not load TensorFlow.
    if name == "MSBert":
        from msbert_tf.api import MSBert

        return MSBert
    if name == "RunConfig":
        from msbert_tf.config import RunConfig

        return RunConfig
    raise AttributeError(name)
