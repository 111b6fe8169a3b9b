"""Reproduces the Keras tf.distribute bugs that `distribute.apply_fixes` fixes.

Standalone: `TF_CPP_MIN_LOG_LEVEL=2 python tests/scripts/compat_repro.py --case C`.
Runs the case first with Keras as it is (the upstream bug should show), then with
`distribute.apply_fixes()`. The last line of stdout is one JSON object:
`{"case", "versions", "without_fix": error or null, "with_fix": results}`.

Cases:
    scalar_metrics: `MultiWorkerMirroredStrategy` in one process, told it is in
        multi-worker mode (`extended._in_multi_worker_mode`), so Keras takes its
        multi-worker reduction path: `fit` with metrics fails with "Invalid
        reduction dimension 0 for input with 0 dimensions" (keras#20585,
        tensorflow#72388). One process cannot show the nested-batch failure (it
        needs two workers: see `multiworker_train.py`).
    uneven_mirrored: `MirroredStrategy` over two logical CPUs; `evaluate` on 25
        examples (first batch 13 + 12) fails with "Inputs to operation AddN of
        type AddN must have the same size and shape" (keras#19246).
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument(
    "--case", choices=["scalar_metrics", "uneven_mirrored"], required=True
)
args = parser.parse_args()

if args.case == "uneven_mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

import warnings  # noqa: E402

import keras  # noqa: E402

from keras_gblend import build_gblend_model  # noqa: E402
from keras_gblend.tf import distribute  # noqa: E402

rng = np.random.default_rng(0)
NUM = 25
x = {
    "a": rng.normal(size=(NUM, 3)).astype("float32"),
    "b": rng.normal(size=(NUM, 5)).astype("float32"),
}
y = rng.integers(0, 3, size=NUM).astype("int32")

if args.case == "scalar_metrics":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    strategy.extended._in_multi_worker_mode = lambda: True
else:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def build(seed):
    keras.utils.set_random_seed(seed)
    branches = {
        m: keras.Sequential(
            [keras.Input(v.shape[1:]), keras.layers.Dense(4)], name=f"{m}_encoder"
        )
        for m, v in x.items()
    }
    model = build_gblend_model(branches, num_classes=3)
    model.compile(
        optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def run():
    with strategy.scope():
        model = build(0)
    if args.case == "scalar_metrics":
        history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return {k: float(v[-1]) for k, v in history.history.items()}
    evaluated = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    single = build(0)  # same seed, no strategy: the one-device reference
    single.set_weights(model.get_weights())
    reference = single.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    return {"mirrored": evaluated, "single": reference}


def short(error):
    message = str(error)
    if len(message) > 600:
        message = f"{message[:300]} ... {message[-300:]}"
    return f"{type(error).__name__}: {message}"


result = {
    "case": args.case,
    "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
}
distribute.remove_fixes()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        run()
        result["without_fix"] = None
    except Exception as error:  # noqa: BLE001 - reporting the upstream failure
        result["without_fix"] = short(error)
# GBlendModel.compile never patches Keras; it warns when the fixes are missing.
result["warnings"] = [str(w.message) for w in caught]
result["applied_by_compile"] = distribute.fixes_applied()
result["applied"] = distribute.apply_fixes()
result["with_fix"] = run()
print(json.dumps(result), flush=True)
