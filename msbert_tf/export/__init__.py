"""Deployment: per-stage LiteRT graphs for phones, a SavedModel for TF Serving.

`python -m msbert_tf.export --run_dir=RUN --output_dir=OUT` writes both; the
bundle format is described in the repository's top-level `export/README.md`.
"""
