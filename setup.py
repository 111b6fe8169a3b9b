"""Package metadata for keras_gblend (tool configuration lives in pyproject.toml)."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "keras_gblend" / "__init__.py").read_text()
).group(1)

setup(
    name="keras-gblend",
    version=VERSION,
    description=(
        "Gradient-Blending (Wang, Tran, Feiszli, CVPR 2020) for multi-modal "
        "classification with Keras 3 (TensorFlow, JAX or PyTorch)."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_gblend", "keras_gblend.*"]),
    package_data={"keras_gblend.data": ["*.npz", "*.md"]},
    # The backend comes from an extra or is already installed: a Keras add-on
    # must not force a CPU or GPU wheel of TensorFlow, JAX or PyTorch on its user.
    install_requires=[
        "keras>=3.15,<3.16",
        "numpy>=1.26",
        "absl-py>=2.0",
    ],
    extras_require={
        # TensorFlow is the primary backend (tf.data pipelines, audio features,
        # tf.distribute, SavedModel export). `tensorflow` is the standard build
        # (on Linux it also uses a GPU when `tensorflow[and-cuda]` is present);
        # `tensorflow-cpu` is the smaller CPU-only build that `make test` and CI
        # use. It does not pull in TensorBoard, which
        # `keras.callbacks.TensorBoard` and the TensorBoard log test need.
        "tensorflow": ["tensorflow>=2.21,<2.22"],
        "tensorflow-cpu": ["tensorflow-cpu>=2.21,<2.22", "tensorboard>=2.21,<2.22"],
        "jax": ["jax>=0.4.34"],
        # Install the torch build you want first (e.g. `torch==2.13.0`, a CPU
        # wheel); this range then installs nothing more.
        "torch": ["torch>=2.1"],
        "test": ["pytest-xdist>=3.8", "pytest>=8", "ruff>=0.6"],
        "tensorboard": ["tensorboard>=2.21,<2.22"],
        "plot": ["matplotlib>=3.8"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
