"""msbert-tf: MS-BERT early-exit BERT classifiers for Keras / TensorFlow."""

__version__ = "0.1.0"
