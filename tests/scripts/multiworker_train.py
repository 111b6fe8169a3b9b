"""One worker of a MultiWorkerMirroredStrategy G-Blend run (or the 1-process baseline).

Standalone: start one process per worker, each with its own `TF_CONFIG`, e.g.

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:23456", "127.0.0.1:23457"]},
                "task": {"type": "worker", "index": 0}}' \\
        python tests/scripts/multiworker_train.py --fix

and the same with `"index": 1` in a second shell. Without `TF_CONFIG` it trains
the same model with the default strategy (one device): the baseline the workers
must match. `--no-fix` leaves Keras unpatched, to show the upstream bug
(keras-team/keras#20585, tensorflow/tensorflow#72388).

Every worker trains on the same global batches (16 examples, 8 per worker via
tf.data auto-sharding) with the in-situ `GBlendCallback`. The last line of stdout
is one JSON object with the results, or with the error when training fails.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--fix", action=argparse.BooleanOptionalAction, default=True)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

import keras  # noqa: E402

from keras_gblend import GBlendCallback, build_gblend_model, data  # noqa: E402
from keras_gblend.tf import distribute  # noqa: E402

SEED = 11
GLOBAL_BATCH = 16

multi_worker = "TF_CONFIG" in os.environ
if multi_worker:
    if args.fix:
        distribute.apply_fixes()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
else:
    strategy = tf.distribute.get_strategy()

tf.config.experimental.enable_op_determinism()
keras.utils.set_random_seed(SEED)
synthetic = data.make_synthetic(num_train=96, num_test=8, dim_b=16, seed=SEED)
# Every batch splits evenly over two workers.
train = data.take(synthetic.train, range(64))
heldout = data.take(synthetic.train, range(64, 88))
subset = data.take(train, range(0, 64, 4))

with strategy.scope():
    branches = {
        m: keras.Sequential(
            [keras.Input(x.shape[1:]), keras.layers.Dense(8, activation="relu")],
            name=f"{m}_encoder",
        )
        for m, x in train[0].items()
    }
    # No dropout: its masks differ between one process and two workers.
    model = build_gblend_model(branches, num_classes=synthetic.num_classes, dropout=0.0)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

result = {
    "multi_worker": multi_worker,
    "fix": args.fix,
    "replicas": strategy.num_replicas_in_sync,
    "task": json.loads(os.environ.get("TF_CONFIG", "{}")).get("task"),
}
callback = GBlendCallback(
    subset, heldout, warmup_epochs=0, super_epoch=1, batch_size=32, verbose=0
)
try:
    history = model.fit(
        *train,
        batch_size=GLOBAL_BATCH,
        epochs=args.epochs,
        shuffle=False,
        callbacks=[callback],
        verbose=0,
    )
except Exception as error:  # noqa: BLE001 - the test reads the upstream error
    message = str(error)
    if len(message) > 600:  # keep the head and the tail; the middle is data
        message = f"{message[:300]} ... {message[-300:]}"
    result["error"] = f"{type(error).__name__}: {message}"
    print(json.dumps(result), flush=True)
    raise SystemExit(3) from None

fused = model.predict(heldout[0], batch_size=GLOBAL_BATCH, verbose=0)["fused"]
result.update(
    blend_weights=model.get_blend_weights(),
    history={k: [float(x) for x in v] for k, v in history.history.items()},
    estimates=callback.state.to_dict()["estimates"],
    weights=[np.asarray(w).ravel().tolist() for w in model.get_weights()],
    fused_heldout=np.asarray(fused).tolist(),
)
print(json.dumps(result), flush=True)
