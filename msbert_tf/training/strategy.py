"""The `tf.distribute` strategy a run trains under, chosen by `RunConfig.strategy`.

- `default`: one device (TF's default strategy);
- `mirrored`: every local GPU, or every logical CPU device when there is no
  GPU (tests split the CPU into two logical devices);
- `multi_worker`: `MultiWorkerMirroredStrategy` over the workers of
  `TF_CONFIG`; every worker runs the same command with the same
  `--output_dir` (a shared file system), the chief writes the run folder and
  the others write only under `RUN/workers/<name>/` (see `worker_name`);
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
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise UserInputError(f"no TPU reachable at {tpu!r} ({str(e).splitlines()[0]}): pass --tpu=<name or grpc://address>.") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserInputError(f"strategy {name!r} is not one of {', '.join(STRATEGIES)}.")


def is_multi_worker(strategy):
    """Whether `strategy` spans more than one worker process."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def worker_name(strategy):
    """None on the chief (the `chief` task, else worker 0) or a single process;
    otherwise this worker's name, e.g. `worker_1`: one writer per file."""
    if not is_multi_worker(strategy):
        return None
    resolver = strategy.cluster_resolver
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief" or (not has_chief and resolver.task_id == 0):
        return None
    return f"{resolver.task_type}_{resolver.task_id}"
