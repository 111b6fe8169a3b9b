"""Trains a small G-Blend model that survives being killed, and reports the result.

Standalone; run it again with the same command after a crash and it resumes:

    TF_CPP_MIN_LOG_LEVEL=2 python tests/scripts/durable_train.py --workdir /tmp/run

Callbacks, in this order: `GBlendCallback(state_path=<workdir>/gblend_state.json)`,
then `keras.callbacks.BackupAndRestore(<workdir>/backup)`. At the end of every
epoch the callback writes its state first, then BackupAndRestore its backup; on
a restart BackupAndRestore restores the model (weights, blend-weight variables,
dropout seed state, optimizer) and the epoch, and the callback reloads its state
and drops what was recorded after that epoch.

Bitwise reproducible: `keras.utils.set_random_seed`, op determinism, fixed
data, `shuffle=False` (the batch order of an epoch must not depend on how many
epochs this process has run), and dropout masks reseeded from the epoch at each
epoch start (`ReseedEachEpoch`: BackupAndRestore does not restore Keras's
dropout seed state).

Options:
    --epoch-sleep S: sleep S seconds at the start of every epoch (time for a
        test to kill the process mid-training).
    --crash-at-epoch E: SIGKILL this process at the end of epoch E, after the
        callback wrote its state and before BackupAndRestore saved (the worst
        moment for the callback); only once per workdir (a marker file
        remembers it).
    --crash-in-backup E: SIGKILL at the end of epoch E inside BackupAndRestore,
        after it wrote the weights and before it wrote the epoch number (Keras
        writes them as two separate, non-atomic files); once per workdir.
    --no-double-checkpoint: BackupAndRestore without `double_checkpoint` (by
        default it keeps the previous backup and falls back to it when the
        latest weights file cannot be read, e.g. torn by a kill mid-write).

The last line of stdout is one JSON object: the epochs this process ran, the
final blend weights, a SHA-256 of the final model weights, the last history,
and the callback's state file.
"""

import argparse
import hashlib
import json
import os
import signal
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--workdir", required=True)
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--epoch-sleep", type=float, default=0.0)
parser.add_argument("--crash-at-epoch", type=int, default=None)
parser.add_argument("--crash-in-backup", type=int, default=None)
parser.add_argument(
    "--double-checkpoint", action=argparse.BooleanOptionalAction, default=True
)
args = parser.parse_args()

import keras  # noqa: E402

import keras_gblend  # noqa: E402

SEED = 5
os.makedirs(args.workdir, exist_ok=True)
state_path = os.path.join(args.workdir, "gblend_state.json")
crash_marker = os.path.join(args.workdir, "crashed")

tf.config.experimental.enable_op_determinism()
keras.utils.set_random_seed(SEED)
synthetic = keras_gblend.data.make_synthetic(
    num_train=96, num_test=8, dim_b=32, seed=SEED
)
train, heldout = keras_gblend.data.holdout_split(synthetic.train, heldout_fraction=0.25)
subset = keras_gblend.data.sample_subset(train, 24)

branches = {
    m: keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Dense(8, activation="relu")],
        name=f"{m}_encoder",
    )
    for m, x in train[0].items()
}
model = keras_gblend.build_gblend_model(
    branches, num_classes=synthetic.num_classes, dropout=0.2
)
model.compile(
    optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)


class Sleep(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        time.sleep(args.epoch_sleep)


class ReseedEachEpoch(keras.callbacks.Callback):
    """Makes dropout masks a function of (seed, epoch, step) only.

    Keras 3.15 does not save `SeedGenerator` states with the weights, so
    BackupAndRestore does not restore them: a resumed run would draw other
    dropout masks. Resetting every state at each epoch start makes the masks
    independent of how many epochs this process has run.
    """

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.variables if "seed_generator_state" in v.path]
        for i, state in enumerate(states):
            state.assign(np.array([self.seed + i, epoch << 20], dtype=state.dtype))


def crash_once(epoch, when):
    if epoch == when and not os.path.exists(crash_marker):
        with open(crash_marker, "w") as handle:
            handle.write(str(epoch))
        os.kill(os.getpid(), signal.SIGKILL)


class CrashOnce(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch
        crash_once(epoch, args.crash_at_epoch)


crasher = CrashOnce()
save_weights = model.save_weights


def save_weights_then_crash(*args_, **kwargs):
    save_weights(*args_, **kwargs)
    crash_once(getattr(crasher, "epoch", None), args.crash_in_backup)


model.save_weights = save_weights_then_crash


callbacks = [
    Sleep(),
    ReseedEachEpoch(SEED),
    keras_gblend.GBlendCallback(
        subset,
        heldout,
        warmup_epochs=0,
        super_epoch=2,
        state_path=state_path,
        verbose=0,
    ),
    crasher,
    keras.callbacks.BackupAndRestore(
        os.path.join(args.workdir, "backup"),
        double_checkpoint=args.double_checkpoint,
        delete_checkpoint=False,
    ),
]
with warnings.catch_warnings():
    warnings.simplefilter("ignore", keras_gblend.GBlendWarning)
    history = model.fit(
        *train,
        batch_size=16,
        epochs=args.epochs,
        shuffle=False,
        callbacks=callbacks,
        verbose=0,
    )

digest = hashlib.sha256()
for weight in model.get_weights():
    digest.update(np.ascontiguousarray(weight).tobytes())
with open(state_path) as handle:
    state = json.load(handle)
print(
    json.dumps(
        {
            "epochs_run": list(history.epoch),
            "blend_weights": model.get_blend_weights(),
            "weights_sha256": digest.hexdigest(),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "state": state,
        }
    ),
    flush=True,
)
