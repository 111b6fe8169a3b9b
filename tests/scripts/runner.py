"""Runs the scripts in this folder in bounded subprocesses, for the tests.

Every process gets `TF_CPP_MIN_LOG_LEVEL=2`, runs in its own process group and
is killed (the whole group, SIGKILL) when it outlives its timeout or when the
caller is done with it.
"""

import json
import os
import signal
import socket
import subprocess
import sys

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(SCRIPTS))


def script_path(name):
    """Absolute path of `tests/scripts/<name>`."""
    return os.path.join(SCRIPTS, name)


def subprocess_env(**extra):
    """The environment for a script: quiet TensorFlow, no inherited TF_CONFIG."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start(args, *, env=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    """Starts `python <args...>` from the repository root in a new process group."""
    return subprocess.Popen(
        [sys.executable, *map(str, args)],
        cwd=REPO_ROOT,
        env=env or subprocess_env(),
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )


def _kill_group(process):
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill(process):
    """SIGKILLs a process started by `start` and its group; reaps it, closes pipes."""
    _kill_group(process)
    process.wait(timeout=30)
    for stream in (process.stdout, process.stderr):
        if stream is not None and not stream.closed:
            stream.close()


def communicate(process, timeout):
    """Waits at most `timeout` s; kills the process group when it runs over.

    Returns:
        `(returncode, stdout, stderr)`; returncode is None after a timeout.
    """
    try:
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate(timeout=30)
        return None, out, err


def last_json(stdout):
    """The JSON object on the last non-empty line of `stdout`."""
    lines = [line for line in (stdout or "").splitlines() if line.strip()]
    if not lines:
        raise AssertionError("The script printed nothing on stdout.")
    return json.loads(lines[-1])


def run_json(args, *, timeout, env=None, expect_returncode=0):
    """Runs a script to completion and returns the JSON on its last line.

    Raises:
        AssertionError: On a timeout or an unexpected exit status, with the tail
            of stderr.
    """
    process = start(args, env=env)
    code, out, err = communicate(process, timeout)
    if code is None:
        raise AssertionError(
            f"{args} timed out after {timeout} s; stderr tail:\n{err[-3000:]}"
        )
    if expect_returncode is not None and code != expect_returncode:
        raise AssertionError(
            f"{args} exited with {code} (expected {expect_returncode}); "
            f"stdout tail:\n{out[-2000:]}\nstderr tail:\n{err[-3000:]}"
        )
    return last_json(out)


def free_ports(count):
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
