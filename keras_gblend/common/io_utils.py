"""Atomic file writes for the state and results the package writes."""

from __future__ import annotations

import json
import os
import tempfile


def atomic_write_text(path, text):
    """Writes `text` to `path` atomically (temporary file, fsync, rename).

    A reader, or a run killed mid-write, sees either the old file or the new one,
    never a partial file. The file gets the usual mode `0o666 & ~umask`.

    Args:
        path: Destination path; its directory is created if missing.
        text: The string to write.

    Raises:
        OSError: If the directory cannot be created or written, with the path in
            the message.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a", "x.txt")
    >>> atomic_write_text(path, "hello")
    >>> with open(path) as handle:
    ...     handle.read()
    'hello'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    except OSError as error:
        raise OSError(f"Cannot write {path!r}: {error}") from error
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 ignores the umask.
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0o022)  # Reading the umask means setting it: put it back.
    os.umask(mask)
    return mask


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically (see `atomic_write_text`).

    Non-finite floats are written as `NaN` / `Infinity`, which Python's `json`
    reads back.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.json")
    >>> atomic_write_json(path, {"w": [0.5, 0.5]})
    >>> with open(path) as handle:
    ...     json.load(handle)
    {'w': [0.5, 0.5]}
    """
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")
