"""Trains a small G-Blend model on one CPU and mirrored over two logical CPUs.

Standalone: run from the repository root, e.g.

    TF_CPP_MIN_LOG_LEVEL=2 python tests/scripts/mirrored_train.py --mode both

The CPU is split into two logical devices before TensorFlow initialises.

Modes:
    single:   the default strategy (one device, /cpu:0).
    mirrored: `MirroredStrategy(["/cpu:0", "/cpu:1"])` (via
              `keras_gblend.tf.distribute.get_strategy`).
    both:     `single`, then `mirrored`, in this process.
    jit, steps_per_execution: mirrored, compiled with `jit_compile=True` or
              `steps_per_execution=2`; reports what `check_compatibility` says
              and whether Keras's own `fit` still fails (the upstream bug).

Several modes run in one process in the order above (`--mode both
steps_per_execution`: the tests' one start-up for both); `jit` runs alone.

Same seed, data and global batch size (16) in every mode, op determinism on
(except `jit`: Keras turns XLA off when op determinism is on). By default every
batch splits evenly over the replicas; `--uneven` uses sizes that do not (Keras
then averages the replicas' per-replica mean losses, which weights the examples
of an uneven batch differently from one device). The last line of stdout is one
JSON object with the results.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument(
    "--mode",
    nargs="+",
    choices=["single", "mirrored", "both", "jit", "steps_per_execution"],
    required=True,
)
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument(
    "--uneven",
    action="store_true",
    help="71 training and 25 held-out examples: batches that do not split evenly",
)
args = parser.parse_args()
if "jit" in args.mode and len(args.mode) > 1:
    parser.error("--mode jit runs alone (without op determinism)")

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402

from keras_gblend import GBlendCallback, build_gblend_model, data  # noqa: E402
from keras_gblend.common import strategy_check  # noqa: E402
from keras_gblend.tf import distribute  # noqa: E402

SEED = 7
GLOBAL_BATCH = 16

if "jit" not in args.mode:
    tf.config.experimental.enable_op_determinism()
synthetic = data.make_synthetic(num_train=96, num_test=8, dim_b=16, seed=SEED)
if args.uneven:
    train, heldout = data.holdout_split(synthetic.train, heldout_fraction=0.25)
    subset = data.sample_subset(train, 23)
else:
    # Every batch splits evenly over two replicas: 64 = 4 x 16 training
    # examples, 16 in T' and 24 in V (one measurement batch each).
    train = data.take(synthetic.train, range(64))
    heldout = data.take(synthetic.train, range(64, 88))
    subset = data.take(train, range(0, 64, 4))


def build(strategy, **compile_kwargs):
    keras.utils.set_random_seed(SEED)
    with strategy.scope():
        branches = {
            m: keras.Sequential(
                [keras.Input(x.shape[1:]), keras.layers.Dense(8, activation="relu")],
                name=f"{m}_encoder",
            )
            for m, x in train[0].items()
        }
        # No dropout: its masks differ between one device and two replicas.
        model = build_gblend_model(
            branches, num_classes=synthetic.num_classes, dropout=0.0
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss="sparse_categorical_crossentropy",
            **compile_kwargs,
        )
    return model


def per_replica(strategy, variable):
    return [
        np.asarray(v).tolist()
        for v in strategy.experimental_local_results(variable.value)
    ]


def train_gblend(strategy):
    model = build(strategy)
    callback = GBlendCallback(
        subset,
        heldout,
        warmup_epochs=0,
        super_epoch=1,
        batch_size=32,
        preset="paper",  # Weights summing to 1, as the test reads them.
        verbose=0,
    )
    history = model.fit(
        *train,
        batch_size=GLOBAL_BATCH,
        epochs=args.epochs,
        shuffle=False,
        callbacks=[callback],
        verbose=0,
    )
    replica_diffs = [
        float(np.max(np.abs(np.asarray(values[0]) - np.asarray(v))))
        for var in model.weights
        for values in [per_replica(strategy, var)]
        for v in values
    ]
    return {
        "replicas": strategy.num_replicas_in_sync,
        "blend_weights": model.get_blend_weights(),
        "blend_weights_per_replica": {
            name: per_replica(strategy, v) for name, v in model.blend_weights.items()
        },
        "max_replica_difference": max(replica_diffs),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "estimates": callback.state.to_dict()["estimates"],
        "weights": [np.asarray(w).ravel().tolist() for w in model.get_weights()],
    }


def try_incompatible(**compile_kwargs):
    strategy = distribute.get_strategy("mirrored")
    try:
        build(strategy, **compile_kwargs)
        compile_error = None
    except ValueError as error:
        compile_error = str(error)
    # GBlendModel.compile refuses these settings; let it through to show what
    # plain Keras does with them, then ask the check directly.
    # (`compile` runs the check from keras_gblend.common.strategy_check.)
    check_compatibility = strategy_check.check_compatibility
    strategy_check.check_compatibility = lambda *args, **kwargs: None
    try:
        model = build(distribute.get_strategy("mirrored"), **compile_kwargs)
    finally:
        strategy_check.check_compatibility = check_compatibility
    result = {
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "compile_error": compile_error,
    }
    try:
        distribute.check_compatibility(
            model.distribute_strategy,
            jit_compile=model.jit_compile,
            steps_per_execution=model.steps_per_execution,
        )
        result["check"] = None
    except ValueError as error:
        result["check"] = str(error)
    try:
        model.fit(*train, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
        result["fit_error"] = None
    except Exception as error:  # noqa: BLE001 - reporting the upstream failure
        result["fit_error"] = f"{type(error).__name__}: {str(error)[-600:]}"
    return result


modes = set(args.mode)
result = {"mode": args.mode, "versions": [keras.__version__, tf.__version__]}
if modes & {"single", "both"}:
    result["single"] = train_gblend(distribute.get_strategy("default"))
if modes & {"mirrored", "both"}:
    result["mirrored"] = train_gblend(distribute.get_strategy("mirrored"))
if "jit" in modes:
    result["jit"] = try_incompatible(jit_compile=True)
if "steps_per_execution" in modes:
    result["steps_per_execution"] = try_incompatible(steps_per_execution=2)
print(json.dumps(result), flush=True)
