"""Shared test set-up: quiet TensorFlow, a fresh Keras session and seed per test."""

import gc
import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import subprocess  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

# Standalone scripts run by tests in subprocesses: never import them here.
collect_ignore_glob = ["scripts/*"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `make demo`'s program at the smoke preset on the demo's data: the README's
# equivalent of `make demo` (tests/test_readme.py), which
# tests/experiments/test_methods.py also runs again to compare.
SMOKE_DEMO = (
    "-m experiments.compare --preset=smoke --dataset=av_digits "
    "--methods=naive,gblend_online"
)


def pytest_collection_modifyitems(items):
    """Runs the tests marked `slow` first, in their collected order.

    Under `make test` (pytest-xdist, a module at a time per worker) the modules
    that hold slow tests start first: a long one that started last would run
    alone after the other workers had finished. In one process, a module's
    tests that share a module-scoped fixture must all be slow or all not, so
    that they stay together and the fixture runs once.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# Tests in other modules that use tests/test_readme.py's session fixtures
# (`readme_first_block`, `smoke_demo`): `make test` runs them with that module.
WITH_THE_README = (
    "tests/backends/test_readme_example.py::",
    "tests/experiments/test_methods.py::test_compare_command_line_is_quiet_",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` (`make test`): a module at a time per worker, with
    `WITH_THE_README` in tests/test_readme.py's unit, so that the session
    fixtures they share run once."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # Only under pytest-xdist.

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            if nodeid.startswith(WITH_THE_README):
                return "tests/test_readme.py"
            return super()._split_scope(nodeid)

    return Scheduling(config, log)


def pytest_collection_finish(session):
    """Moves what the imports and the collection made out of the garbage
    collector's reach (`gc.freeze`): they live as long as the session, and each
    test's `clear_session`, a full collection, no longer walks them (0.2-0.5 s
    a test on 2 cores). Later garbage is collected as before."""
    gc.collect()
    gc.freeze()


def _forget_traced_custom_gradients():
    """Drops the gradient functions that tracing registered under TensorFlow's
    unique `CustomGradient-N` names, so that what they hold can be collected.

    Keras's TensorFlow optimizer sums the gradients with a replica context's
    `all_reduce`, a `tf.custom_gradient`: traced in a graph (every train
    function), it registers its gradient function in TensorFlow's global
    gradient registry under a fresh name, and that function holds the whole
    train graph. Nothing removes it, so each `fit` of the session kept its
    graph alive: the live objects grew test after test, and with them every
    garbage collection (each test's `clear_session` and the automatic ones
    while tracing; 0.5 s a test late in a worker). A registered function is
    only looked up while the graph that holds its op is differentiated, during
    that trace; between tests no trace is under way, and a later trace
    registers its own.
    """
    ops = sys.modules.get("tensorflow.python.framework.ops")
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if registry is None:  # Another backend, or TensorFlow changed its registry.
        return
    for name in [n for n in registry if n.startswith("CustomGradient-")]:
        del registry[name]


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Clears Keras state and seeds every RNG so each test starts the same way."""
    _forget_traced_custom_gradients()
    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def smoke_demo(tmp_path_factory):
    """`SMOKE_DEMO` run once per process (under `make test`, once per worker
    that runs a module using it) as `make demo` runs its programs (TensorFlow's
    C++ log level 3), in the user's environment (no `PYTHONPATH` added).

    Returns:
        `(result, output_dir)`: the `subprocess.CompletedProcess` (text
        output; it exited 0) and its `--output_dir`, `.../runs/demo`.
    """
    output_dir = tmp_path_factory.mktemp("smoke_demo") / "runs" / "demo"
    result = subprocess.run(
        [sys.executable, *SMOKE_DEMO.split(), f"--output_dir={output_dir}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result, output_dir


@pytest.fixture(scope="session")
def readme_first_block(tmp_path_factory):
    """README.md's first block ("Use it on your own data") run once per process
    (as `smoke_demo`), with `README_EPOCHS` epochs instead of 30, without its
    SavedModel export where TensorFlow is absent (tests/backends on JAX and
    PyTorch).

    Returns:
        The block's namespace (`model`, `chosen`, `accuracy`, `build`, ...).
    """
    from tests import helpers  # It imports this module (REPO_ROOT).

    code = helpers.readme_section_block("Use it on your own data")
    assert "epochs=30" in code and helpers.README_EXPORT in code
    code = code.replace("epochs=30", f"epochs={helpers.README_EPOCHS}")
    if importlib.util.find_spec("tensorflow") is None:
        code = code.replace(helpers.README_EXPORT, "")
    directory = tmp_path_factory.mktemp("readme_first_block")
    return helpers.run_readme_code(directory, code, {})
