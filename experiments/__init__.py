"""The experiment programs: `train`, `compare`, `sensitivity` over `methods`.

Importing this package starts TensorFlow quietly, for the command-line programs:
its C++ start-up lines (the oneDNN notice) are hidden, and its C++ log level
defaults to 3 (errors hidden too) because under op determinism, which the
programs turn on, tf.data logs a harmless `NodeDef mentions attribute
use_unbounded_threadpool` ERROR line at every `fit` and `predict`. Python
exceptions are unaffected. Set `TF_CPP_MIN_LOG_LEVEL=0` (or 1) to see every line.
"""

import contextlib
import os
import sys

if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "2":
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


@contextlib.contextmanager
def quiet_native_stderr():
    """Sends what native code writes to stderr (file descriptor 2) to /dev/null.

    TensorFlow logs its start-up notices from C++ before its log level applies;
    Python's own `sys.stderr` is flushed first and restored after.

    Example:

    >>> with quiet_native_stderr():
    ...     pass
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # No file descriptor 2 (embedded interpreters): nothing to hide.
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with quiet_native_stderr():
    import tensorflow  # noqa: F401
