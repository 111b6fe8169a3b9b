"""G-Blend training under `keras.distribution.DataParallel` on JAX CPU devices.

Standalone (JAX backend only):
    KERAS_BACKEND=jax python tests/scripts/jax_data_parallel.py --devices 2

Splits the one host CPU into two XLA devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`, set before JAX starts),
trains the toy model with in-situ G-Blend (an estimate after every epoch) on
`--devices` of them, and prints one JSON object on its last stdout line: the
blend weights, each blend-weight variable's value on every device it lives on,
the estimates, the history and the weights. `--devices 1` trains without a
distribution: the one-device reference.
"""

import argparse
import json
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
)

parser = argparse.ArgumentParser()
parser.add_argument("--devices", type=int, default=2)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_gblend import GBlendCallback, data  # noqa: E402
from tests.helpers import synthetic_setup  # noqa: E402

GLOBAL_BATCH = 16

if args.devices > 1:
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices()[: args.devices])
    )
keras.utils.set_random_seed(7)
# 120 training examples (batches of 16 and a last one of 8) and 40 held out: every
# batch splits evenly over two devices (JAX requires it: an odd-sized last batch
# of `predict` fails with "IndivisibleError"); every second example in T'.
model, train, heldout = synthetic_setup(num_train=160, seed=7)
subset = data.take(train, range(0, len(train[1]), 2))
callback = GBlendCallback(subset, heldout, warmup_epochs=0, super_epoch=1, verbose=0)
options = dict(batch_size=GLOBAL_BATCH, epochs=args.epochs, shuffle=False, verbose=0)
history = model.fit(*train, callbacks=[callback], **options)


def per_device(variable):
    value = variable.value
    return {
        str(shard.device): float(np.asarray(shard.data))
        for shard in value.addressable_shards
    }


print(
    json.dumps(
        {
            "devices": [str(d) for d in jax.devices()],
            "distribution": type(keras.distribution.distribution()).__name__,
            "blend_weights": model.get_blend_weights(),
            "blend_weights_per_device": {
                name: per_device(v) for name, v in model.blend_weights.items()
            },
            "estimates": len(getattr(callback, "estimates", []) or []),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "weights": [np.asarray(w).ravel().tolist() for w in model.get_weights()],
        }
    ),
    flush=True,
)
