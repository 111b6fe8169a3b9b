"""The TensorFlow-only parts; the rest of the package runs on any backend.

Modules:
    distribute: `tf.distribute` strategies, checks of broken set-ups, fixes.
    export: `export_saved_model`, a SavedModel with every output mode.
"""
