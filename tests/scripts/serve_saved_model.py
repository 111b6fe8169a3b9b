"""Loads an exported SavedModel with TensorFlow only and runs it, as a server would.

Standalone (imports neither Keras nor keras_gblend):

    TF_CPP_MIN_LOG_LEVEL=2 python tests/scripts/serve_saved_model.py \\
        --dir /tmp/served --inputs inputs.npz --batch-sizes 1 3 17

`inputs.npz` holds one array per modality (at least max(batch sizes) rows). For
each batch size b the first b rows are fed to the `serving_default` signature by
keyword. The last line of stdout is one JSON object: the signature's input and
output specs, the SavedModel's variable names, and the outputs per batch size.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--dir", required=True)
parser.add_argument("--inputs", required=True)
parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 3, 17])
args = parser.parse_args()

loaded = tf.saved_model.load(args.dir)
serve = loaded.signatures["serving_default"]
inputs = dict(np.load(args.inputs))
_, input_specs = serve.structured_input_signature
result = {
    "signatures": sorted(loaded.signatures),
    "inputs": {
        name: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
        for name, spec in input_specs.items()
    },
    "outputs": {
        name: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
        for name, spec in serve.structured_outputs.items()
    },
    "variables": sorted(v.name for v in loaded.variables),
    "results": {},
}
for size in args.batch_sizes:
    feed = {name: tf.constant(value[:size]) for name, value in inputs.items()}
    outputs = serve(**feed)
    result["results"][str(size)] = {k: v.numpy().tolist() for k, v in outputs.items()}
print(json.dumps(result), flush=True)
