"""What every layer may use; imports nothing else of the package.

Modules:
    messages: the warning categories (`GBlendWarning`), the estimate lines,
        and the argument checks that word their errors.
    io_utils: atomic writes of the files the package writes.
    strategy_check: the check `GBlendModel.compile` runs on its
        `tf.distribute` strategy, and the record of the Keras fixes in effect.
    tf_gate: `require_tensorflow`, the gate in front of every TensorFlow-only
        module: it says what to install or set when TensorFlow is missing.
"""
