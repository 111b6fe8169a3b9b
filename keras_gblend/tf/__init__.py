"""The TensorFlow-only parts; the rest of the package runs on any backend.

Modules:
    support: `require_tensorflow`, the gate that says what to install or set.
    distribute: `tf.distribute` strategies, checks of broken set-ups, fixes.
    export: `export_saved_model`, a SavedModel with every output mode.
"""
