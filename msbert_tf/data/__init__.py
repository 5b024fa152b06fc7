"""Data: task registry, file/TFDS readers, tf.data pipeline."""
