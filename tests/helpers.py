"""What the tests share: small models and data, subprocess runs, the tools.

No TensorFlow is imported here: tests/backends uses it on JAX and PyTorch.
"""

import importlib
import os
import re
import subprocess
import sys

import keras
import numpy as np

from keras_gblend import build_gblend_model, data, mlp_encoder
from tests.conftest import REPO_ROOT
from tests.scripts import runner

# The toy task's modalities (name: feature size) and classes.
TOY_DIMS = {"a": 3, "b": 5}
TOY_CLASSES = 3


def synthetic_setup(num_train=96, seed=0, learning_rate=0.05, optimizer=None):
    """A compiled two-modality GBlendModel with its trained part and held-out set.

    Synthetic data (`dim_b` 16, 4 classes), a 25 % stratified held-out split,
    8-unit MLP branches, SGD with momentum (or `optimizer`).

    Returns:
        `(model, train, heldout)`, the data as `(x, y)` array pairs.
    """
    ds = data.make_synthetic(num_train=num_train, num_test=8, dim_b=16, seed=seed)
    train, heldout = data.holdout_split(ds.train, heldout_fraction=0.25, seed=seed)
    branches = {
        m: mlp_encoder(x.shape[1:], units=(8,), name=f"{m}_encoder")
        for m, x in train[0].items()
    }
    model = build_gblend_model(branches, num_classes=ds.num_classes)
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(learning_rate, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model, train, heldout


def toy_data(num=16, seed=0, dims=None, num_classes=TOY_CLASSES):
    """`(x, y)`: standard-normal float32 modalities (`dims`, default
    `TOY_DIMS`) and int32 labels in `[0, num_classes)`."""
    rng = np.random.default_rng(seed)
    dims = TOY_DIMS if dims is None else dims
    x = {m: rng.normal(size=(num, d)).astype("float32") for m, d in dims.items()}
    return x, rng.integers(0, num_classes, size=num).astype("int32")


def toy_model(
    seed=0,
    fused_layer=None,
    learning_rate=0.1,
    *,
    dims=None,
    num_classes=TOY_CLASSES,
    units=4,
):
    """A GBlendModel with one `units`-unit tanh Dense branch per modality.

    Compiled with plain SGD (no momentum: a zero gradient leaves a weight
    exactly as it was) at `learning_rate`, or not compiled if it is None.
    `fused_layer`, if given, is applied to the first branch's features.
    """
    keras.utils.set_random_seed(seed)
    branches = {}
    for i, (m, d) in enumerate((TOY_DIMS if dims is None else dims).items()):
        layers = [keras.Input((d,)), keras.layers.Dense(units, activation="tanh")]
        if fused_layer is not None and i == 0:
            layers.append(fused_layer)
        branches[m] = keras.Sequential(layers, name=f"{m}_encoder")
    model = build_gblend_model(branches, num_classes=num_classes)
    if learning_rate is not None:
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate),
            loss="sparse_categorical_crossentropy",
        )
    return model


def cross_entropy(probs, y):
    """Mean sparse categorical cross-entropy, in float64 numpy."""
    probs = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(np.log(probs[np.arange(len(y)), y])))


def run_command(command, *, cwd=REPO_ROOT, timeout=600, env=None):
    """Runs `command` to completion; it must exit 0.

    The environment is `runner.subprocess_env()` (quiet TensorFlow, the
    repository on `PYTHONPATH`) unless `env` is given.

    Returns:
        The `subprocess.CompletedProcess`, with `stdout` and `stderr` as text.

    Raises:
        AssertionError: If it exits with another status, with stderr's tail.
    """
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=runner.subprocess_env() if env is None else env,
        check=False,
    )
    assert result.returncode == 0, (command[:3], result.stderr[-4000:])
    return result


def run_python(*args, **kwargs):
    """`run_command` of this interpreter with `args` (`"-c", code` or a module)."""
    return run_command([sys.executable, *args], **kwargs)


def tool(name):
    """tools/<name>.py imported once, as the module `tools.<name>` (each tool
    defines absl flags, which a second import would define again)."""
    return importlib.import_module(f"tools.{name}")


# README.md's first block, "Use it on your own data": its SavedModel export
# (TensorFlow only) and the epochs the tests run instead of its 30: the default
# callback's first estimate ends epoch 5 (warm-up 2, super-epoch 3) and epoch 6
# trains with its weights. Measured at 6 epochs (2 seeds): the first block
# 91.5 and 90.8 on the test split, naive fusion 83.5 and 83.4; at 10: 93.6 and
# 88.5 (tests/test_readme.py::test_first_block_beats_naive_fusion_on_av_digits).
README_EXPORT = (
    "from keras_gblend import export_saved_model  # SavedModel export: needs TensorFlow"
    '\n\nexport_saved_model(model, "served/")'
)
README_EPOCHS = 6


def readme_section_block(heading):
    """The first python block under README.md's `## heading` section."""
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        text = handle.read()
    assert f"## {heading}\n" in text, f"README.md lost its heading {heading!r}"
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def run_readme_code(directory, code, namespace):
    """Runs README code in `directory` (the first block writes `served/`) in
    `namespace`, and returns it."""
    here = os.getcwd()
    os.chdir(directory)
    try:
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(here)
    return namespace
