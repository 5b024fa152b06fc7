"""The `tf.distribute` strategy a run trains under, chosen by `RunConfig.strategy`.

- `default`: one device (TF's default strategy);
- `mirrored`: every local GPU, or every logical CPU device when there is no
  GPU (tests split the CPU into two logical devices);
- `multi_worker`: refused for now. Keras 3.15's `fit` under
  `MultiWorkerMirroredStrategy` fails before the first step (it peeks a batch
  and `strategy.reduce`s the feature dict, which that strategy cannot:
  "Attempt to convert a value ({'token_ids': PerReplica...}) to a Tensor",
  seen here with two workers on localhost). It needs the custom
  `strategy.run` loop of issue 6;
- `tpu`: `TPUStrategy` on the TPU at `RunConfig.tpu` (a name or grpc:// address).

`data.batch_size` is the global batch: Keras splits each batch across the
replicas and divides the loss by their number, so the gradient is the same
as one device's on the whole batch.

```python
strategy = make_strategy("mirrored")
with strategy.scope():
    ...  # build the model, its optimizer and losses; then fit
```
"""

import tensorflow as tf

from msbert_tf.errors import UserInputError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name, tpu=None):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        return tf.distribute.MirroredStrategy(devices or [d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multi_worker":
        raise UserInputError(
            "--strategy=multi_worker is not supported yet: Keras 3's fit fails under "
            "MultiWorkerMirroredStrategy (it cannot reduce the batch it peeks); use mirrored "
            "(all devices of one machine) until the custom training loop lands."
        )
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise UserInputError(f"no TPU reachable at {tpu!r} ({str(e).splitlines()[0]}): pass --tpu=<name or grpc://address>.") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserInputError(f"strategy {name!r} is not one of {', '.join(STRATEGIES)}.")
