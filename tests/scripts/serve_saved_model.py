"""Loads an exported SavedModel with TensorFlow only and runs it, as a server would.

Standalone (imports neither Keras nor keras_gblend):

    TF_CPP_MIN_LOG_LEVEL=2 python tests/scripts/serve_saved_model.py \\
        --dir /tmp/served --inputs inputs.npz --batch-sizes 1 3 17

`inputs.npz` holds one array per modality (at least max(batch sizes) rows). For
every signature and each batch size b, the first b rows of the signature's own
inputs are fed by keyword. The last line of stdout is one JSON object: per
signature its input and output specs and its outputs per batch size, and the
SavedModel's variable names.
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
inputs = dict(np.load(args.inputs))
result = {"variables": sorted(v.name for v in loaded.variables), "signatures": {}}
for name, serve in sorted(loaded.signatures.items()):
    _, input_specs = serve.structured_input_signature
    entry = {
        "inputs": {
            key: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
            for key, spec in input_specs.items()
        },
        "outputs": {
            key: {"shape": spec.shape.as_list(), "dtype": spec.dtype.name}
            for key, spec in serve.structured_outputs.items()
        },
        "results": {},
    }
    for size in args.batch_sizes:
        feed = {key: tf.constant(inputs[key][:size]) for key in input_specs}
        outputs = serve(**feed)
        entry["results"][str(size)] = {
            key: value.numpy().tolist() for key, value in outputs.items()
        }
    result["signatures"][name] = entry
print(json.dumps(result), flush=True)
