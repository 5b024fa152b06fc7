"""The classifier a run's config describes, with its preprocessor.

```python
from msbert_tf.config import RunConfig
from msbert_tf.data.tasks import get_task
from msbert_tf.models.build import build_classifier
config = RunConfig.from_dict({"model": {"backbone": "random"}})
classifier, preprocessor = build_classifier(config, get_task("sst2"))
```
"""

from msbert_tf.models.backbone import load_backbone
from msbert_tf.models.classifier import MSBertClassifier


def build_classifier(config, task):
    backbone, preprocessor = load_backbone(config.model, config.data.max_seq_length)
    classifier = MSBertClassifier(
        backbone,
        num_labels=task.num_labels,
        head=config.model.head,
        head_dim=config.model.head_dim,
        head_num_heads=config.model.head_num_heads,
        head_depth=config.model.head_depth,
        dropout=config.model.dropout,
        teacher_pooling=config.model.teacher_pooling,
    )
    classifier.build()
    return classifier, preprocessor
