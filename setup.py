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
        "classification with Keras 3 and TensorFlow."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_gblend", "keras_gblend.*"]),
    package_data={"keras_gblend.data": ["*.npz", "*.md"]},
    install_requires=[
        # The CPU wheel is enough for CI; on a GPU machine install
        # `tensorflow[and-cuda]==2.21.*` instead (see README).
        "tensorflow-cpu>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "numpy>=1.26",
        "absl-py>=2.0",
    ],
    extras_require={
        # tensorflow-cpu does not pull in TensorBoard, which keras.callbacks.TensorBoard
        # and the TensorBoard log test need.
        "test": ["pytest>=8", "ruff>=0.6", "tensorboard>=2.21,<2.22"],
        "tensorboard": ["tensorboard>=2.21,<2.22"],
        "plot": ["matplotlib>=3.8"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
