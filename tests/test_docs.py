"""The docs cannot drift: their code runs and every name they cite exists.

1. Every ```python block of docs/*.md runs (README.md's run in
   tests/test_readme.py): a page's blocks run in order in one namespace, in a
   fresh process whose working directory is a temporary folder, after the
   page's `SETUP` (the names its fragments assume: a small model and data) and
   with the page's `SUBSTITUTIONS` (smaller settings; each must still occur in
   the page). A block that cannot run here is marked in the markdown by a
   visible `<!-- not run: reason -->` line right before it, reason required.
2. Every name README.md and docs/*.md cite exists: dotted names in backticks
   of the package, its modules and the experiments (`keras_gblend.x.y`,
   `head_copies.HeadCopies`, `GBlendModel.head_model`), file paths
   (`tests/...py`, `tools/...py`, `docs/...md`, ...) and test ids
   (`tests/test_x.py::test_name`, or `test_x.py::test_name` under tests/).
3. The README and docs use the public API only: their code imports from
   `keras_gblend` (or its public sub-packages `data` and `baselines`), every
   symbol they import exists there, and their prose cites the package as
   `keras_gblend.<public name>` (docs/architecture.md, the map of the
   internals, aside). `keras_gblend.__all__` is complete and imports no
   TensorFlow-only module.
"""

import ast
import functools
import importlib
import json
import os
import pkgutil
import re

import numpy as np
import pytest

import keras_gblend
from tests.conftest import REPO_ROOT
from tests.helpers import run_python

DOCS = os.path.join(REPO_ROOT, "docs")
PAGES = sorted(p for p in os.listdir(DOCS) if p.endswith(".md"))
NOT_RUN = re.compile(r"<!--\s*not run\b:?(.*?)-->\s*$")
# Names the docs cite as GONE ("`export.export_fused` ... are gone"): they must
# stay gone, or the sentence is wrong.
GONE = {"export.export_fused", "export.fused_model"}


def _read(path):
    with open(os.path.join(REPO_ROOT, path)) as handle:
        return handle.read()


def _python_blocks(page):
    """`(code, reason)` for each python block of `page`; reason None: it runs."""
    return _blocks_of(_read(os.path.join("docs", page)))


def _blocks_of(text):
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NOT_RUN.search(before)
        blocks.append((match.group(1), marker.group(1).strip() if marker else None))
    return blocks


# Part 1: every python block runs.

# The names a page's fragments assume, defined before its first block.
_SMALL_MODEL = """
import keras
import numpy as np
from keras_gblend import GBlendCallback, build_gblend_model, data, mlp_encoder

_ds = data.make_synthetic(num_train=160, num_test=40, dim_b=16)
_rename = lambda pair: ({"image": pair[0]["a"], "audio": pair[0]["b"]}, pair[1])
(x, y), heldout = data.holdout_split(_rename(_ds.train), heldout_fraction=0.25)
x_train, y_train = x, y
x_test, y_test = _rename(_ds.test)
subset = data.sample_subset((x, y), 32)
model = build_gblend_model(
    {m: mlp_encoder(v.shape[1:], units=(8,), name=f"{m}_encoder")
     for m, v in x.items()},
    num_classes=_ds.num_classes,
)
model.compile(
    optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    loss="sparse_categorical_crossentropy",
)
"""
SETUP = {
    "diagnostics.md": _SMALL_MODEL + "x_val, y_val = x_test, y_test\n",
    "inference.md": _SMALL_MODEL
    + """
audio_clips = x_test["audio"]
image_is_blank = np.arange(len(y_test)) % 3 == 0
x = x_test
""",
    "ogm_ge.md": """
from keras_gblend import data

_train, _test = data.load_av_digits("train"), data.load_av_digits("test")
x, y = {m: v[:128] for m, v in _train.x.items()}, _train.y[:128]
x_test = {m: v[:32] for m, v in _test.x.items()}
""",
}
# (as written, as run): fewer epochs and examples. Every entry must occur in
# its page. Everywhere, "/tmp/" is a fresh temporary folder.
SUBSTITUTIONS = {
    "diagnostics.md": [
        ("epochs=30", "epochs=6"),  # One estimate (warm-up 2, super-epoch 3).
        ("runs/demo/states/gblend_online_seed0.json", "runs/demo/gblend_state.json"),
        ("callback.state)", "callbacks[0].state)"),  # The first block's.
        ("epochs=config.epochs", "epochs=3"),
    ],
    "inference.md": [
        (
            "callbacks=[GBlendCallback(subset, heldout)], ...)",
            "callbacks=[GBlendCallback(subset, heldout)], epochs=2)",
        )
    ],
    "ogm_ge.md": [("epochs=30", "epochs=1")],
    "robustness.md": [
        ("num_train=2000, num_test=500", "num_train=256, num_test=64"),
        ("sample_subset(train, 256)", "sample_subset(train, 64)"),
        ("epochs=5,", "epochs=1,"),
        ("num_train=500, num_test=100", "num_train=64, num_test=16"),
        ("epochs=50", "epochs=2"),
    ],
}
# The pages run in as few fresh processes as they allow (a TensorFlow start-up
# takes seconds): a page configures TensorFlow before it initialises (in
# `ALONE`) in a process of its own; the others one after the other in one
# process, each in its own namespace and working directory, Keras's global
# state (session, dtype policy) back to its defaults after each page.
ALONE = {"robustness.md"}  # Splits the CPU into two logical devices first.
RUNNER = """
import json, os, sys, traceback
for page, directory, blocks in json.load(open(sys.argv[1])):
    os.chdir(directory)
    namespace = {"__name__": "__main__"}
    try:
        for name, code in blocks:
            exec(compile(code, name, "exec"), namespace)
        result = {"ran": len(blocks)}
    except BaseException:
        result = {"error": traceback.format_exc()}
    if "keras" in sys.modules:
        import keras
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()
    print("page result:", json.dumps({page: result}), flush=True)
"""
RUN_PAGES = [p for p in PAGES if any(r is None for _, r in _python_blocks(p))]


def test_every_block_runs_or_says_why_not():
    for page in PAGES:
        for _, reason in _python_blocks(page):
            assert reason is None or reason, f"{page}: a `not run` without reason"
    text = (
        "<!-- not run: no GPU -->\n```python\na\n```\n"
        "<!-- not run: -->\n```python\nb\n```\n```python\nc\n```"
    )
    assert _blocks_of(text) == [("a\n", "no GPU"), ("b\n", ""), ("c\n", None)]
    assert set(SETUP) <= set(RUN_PAGES) and set(SUBSTITUTIONS) <= set(RUN_PAGES)
    assert ALONE <= set(RUN_PAGES)


def _page_program(page, tmp):
    blocks = [(f"docs/{page}", SETUP.get(page, ""))]
    for i, (code, reason) in enumerate(_python_blocks(page)):
        if reason is None:
            blocks.append((f"docs/{page}, python block {i + 1}", code))
    for old, new in SUBSTITUTIONS.get(page, []):
        assert any(old in c for _, c in blocks), f"{page} no longer has {old!r}"
        blocks = [(n, c.replace(old, new)) for n, c in blocks]
    return [(n, c.replace("/tmp/", f"{tmp}/")) for n, c in blocks]


@pytest.fixture(scope="module")
def pages_run(tmp_path_factory):
    """`{page: {"ran": number of blocks} or {"error": traceback}}` for every
    page of `RUN_PAGES`, run as `ALONE` says."""
    shared = [p for p in RUN_PAGES if p not in ALONE]
    results = {}
    for group in [shared] + [[p] for p in RUN_PAGES if p in ALONE]:
        folder = tmp_path_factory.mktemp("docs_blocks")
        program = []
        for page in group:
            tmp = folder / page.removesuffix(".md")
            tmp.mkdir()
            program.append((page, str(tmp), _page_program(page, tmp)))
        (folder / "blocks.json").write_text(json.dumps(program))
        result = run_python("-c", RUNNER, folder / "blocks.json", cwd=folder)
        for line in result.stdout.splitlines():
            if line.startswith("page result: "):
                results.update(json.loads(line.split(": ", 1)[1]))
    return results


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES)
def test_python_blocks_run(page, pages_run):
    ran = sum(r is None for _, r in _python_blocks(page))
    assert pages_run.get(page) == {"ran": ran + 1}, pages_run.get(page)


# Part 2: every cited name exists.

SOURCES = ["README.md"] + [f"docs/{p}" for p in PAGES]
PATH = re.compile(
    r"(?<![\w/.])((?:tests|tools|experiments|keras_gblend|docs)/[\w/.-]*\w"
    r"\.(?:py|md|png|npz|json|csv)|[A-Z][A-Z_]+\.md)(?![\w/])"
)
TEST_ID = re.compile(r"(?<![\w/])((?:tests/)?[\w/]*test_\w+\.py)::(\w+)")


# The public API: the eager names and those imported on first access.
PUBLIC = set(keras_gblend.__all__) | set(keras_gblend._LAZY)
# Module names the docs use for objects: `callback.estimates` is an instance.
OBJECT_NAMES = {"callback"}


@functools.cache
def _module_names():
    """Short module names a doc may cite (`head_copies`, `pipelines`, `common`):
    the experiments' modules first, then every module of the package."""
    names = {}
    for package in ("experiments", "keras_gblend"):
        path = os.path.join(REPO_ROOT, package)
        for info in pkgutil.walk_packages([path], prefix=f"{package}."):
            short = info.name.rpartition(".")[2]
            if not info.ispkg and short not in OBJECT_NAMES:
                names.setdefault(short, info.name)
    return names


def _resolve(dotted):
    """The object `dotted` names, or None if it is not a package name.

    A first part that is a public name (`estimators.paper`, `data.audio`) is
    `keras_gblend.<name>`; otherwise an experiments module or a module of the
    package, by its last name (`common.split`, `head_copies.HeadCopies`).
    """
    first, *rest = dotted.split(".")
    if first == "keras_gblend" or first == "experiments":
        module, rest = first, rest
    elif first in PUBLIC:
        module, rest = "keras_gblend", [first, *rest]
    elif first in _module_names():
        module = _module_names()[first]
    else:
        return None  # `model.fit`, `keras.callbacks...`: not this package's.
    obj = importlib.import_module(module)
    for part in rest:
        if not hasattr(obj, part) and hasattr(obj, "__path__"):
            obj = importlib.import_module(f"{obj.__name__}.{part}")  # A submodule.
        else:
            obj = getattr(obj, part)
    return obj


def _dotted_names(text):
    for span in re.findall(r"`([^`\n]+)`", _prose(text)):
        match = re.fullmatch(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\(.*\))?", span)
        if match:
            yield match.group(1)


def _prose(text):
    """`text` without its fenced code blocks (those run, or say why not)."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _test_functions(path):
    tree = ast.parse(_read(path))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("source", SOURCES)
def test_every_dotted_name_exists(source):
    broken = []
    for name in sorted(set(_dotted_names(_read(source)))):
        if name in GONE:
            with pytest.raises((AttributeError, ImportError)):
                _resolve(name)
            continue
        try:
            _resolve(name)
        except (AttributeError, ImportError) as error:
            broken.append(f"{name} ({type(error).__name__}: {error})")
    assert not broken, f"{source} cites names that do not exist: {broken}"


@pytest.mark.parametrize("source", SOURCES)
def test_every_file_path_exists(source):
    paths = set(PATH.findall(_read(source)))
    missing = sorted(p for p in paths if not os.path.exists(os.path.join(REPO_ROOT, p)))
    assert not missing, f"{source} cites files that do not exist: {missing}"


@pytest.mark.parametrize("source", SOURCES)
def test_every_test_id_exists(source):
    broken = []
    for path, name in sorted(set(TEST_ID.findall(_read(source)))):
        path = path if path.startswith("tests/") else f"tests/{path}"
        if not os.path.isfile(os.path.join(REPO_ROOT, path)):
            broken.append(f"{path}::{name} (no such file)")
        elif name not in _test_functions(path):
            broken.append(f"{path}::{name} (no such test)")
    assert not broken, f"{source} cites tests that do not exist: {broken}"


def test_the_checks_find_what_they_look_for():
    text = (
        "`keras_gblend.tf.distribute.apply_fixes()` and `head_copies.HeadCopies`, "
        "`GBlendModel.head_model`, `model.fit`; see "
        "tests/blend/test_head_copies.py and "
        "`test_inference.py::test_bad_inputs_give_clear_errors`, DESIGN.md.\n"
        "```python\n`keras_gblend.nothing`\n```"
    )
    names = list(_dotted_names(text))
    assert names == [
        "keras_gblend.tf.distribute.apply_fixes",
        "head_copies.HeadCopies",
        "GBlendModel.head_model",
        "model.fit",
    ]
    assert [_resolve(n) is not None for n in names] == [True, True, True, False]
    assert PATH.findall(text) == ["tests/blend/test_head_copies.py", "DESIGN.md"]
    assert TEST_ID.findall(text) == [
        ("test_inference.py", "test_bad_inputs_give_clear_errors")
    ]
    with pytest.raises(AttributeError):
        _resolve("export.export_fused")
    with pytest.raises(ImportError):
        _resolve("keras_gblend.compat.apply_distribute_fixes")


def test_the_speed_table_of_backends_md_is_the_one_measured_in_benchmarks_md():
    rows = re.findall(
        r"^\| (?:TensorFlow|JAX|PyTorch).*\|$", _read("docs/backends.md"), re.M
    )
    assert len(rows) == 3
    benchmarks = _read("BENCHMARKS.md").splitlines()
    assert all(row in benchmarks for row in rows), rows


def test_the_state_file_holds_the_initial_weights_as_diagnostics_md_says(tmp_path):
    from keras_gblend import GBlendCallback
    from keras_gblend.report import history
    from tests.helpers import synthetic_setup

    assert "and the initial weights" in _read("docs/diagnostics.md")
    model, train, heldout = synthetic_setup(num_train=40)
    model.set_blend_weights([0.5, 0.25, 0.25])
    path = tmp_path / "state.json"
    callback = GBlendCallback(
        train, heldout, warmup_epochs=0, super_epoch=1, state_path=str(path), verbose=0
    )
    model.fit(*train, epochs=1, verbose=0, callbacks=[callback])
    np.testing.assert_allclose(
        json.loads(path.read_text())["initial_weights"], [0.5, 0.25, 0.25]
    )
    epochs, weights = history.read_history(str(path)).series("weight", "a")
    assert (epochs[0], weights[0]) == (0, 0.5)


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_class_weight_does_not_weight_the_measurement_as_method_md_says():
    from keras_gblend import GBlendCallback
    from tests.helpers import synthetic_setup

    text = " ".join(_read("docs/method.md").split())
    assert "`sample_weight` and `class_weight` do not weight the measurement" in text
    model, train, heldout = synthetic_setup(num_train=40)
    class_weight = {0: 20.0, 1: 1.0, 2: 1.0, 3: 1.0}
    callback = GBlendCallback(train, heldout, warmup_epochs=0, super_epoch=1, verbose=0)
    model.fit(
        *train, epochs=1, class_weight=class_weight, callbacks=[callback], verbose=0
    )
    measured = callback.state.measurements[-1].heldout
    probs = model.predict(heldout[0], verbose=0)
    y = heldout[1]
    losses = [-np.log(probs[h][np.arange(len(y)), y]) for h in model.head_names]
    np.testing.assert_allclose(measured, [v.mean() for v in losses], rtol=1e-4)
    weights = np.array([class_weight[c] for c in y])
    weighted = [np.average(v, weights=weights) for v in losses]
    assert not np.allclose(measured, weighted, rtol=1e-2)


# Part 3: the docs use the public API only.

# What a doc may import from: the package and its two public sub-packages.
PUBLIC_MODULES = ("keras_gblend", "keras_gblend.data", "keras_gblend.baselines")
# The map of the internals: it names every module by its path.
INTERNALS = "docs/architecture.md"


def _code_blocks(source):
    return re.findall(r"```python\n(.*?)```", _read(source), flags=re.S)


IMPORT = re.compile(
    r"^[ \t]*(from[ \t]+keras_gblend\S*[ \t]+import[ \t]+(?:\([^)]*\)|.*)"
    r"|import[ \t]+keras_gblend.*)$",
    re.M,
)


def _package_imports(code):
    """`(module, name)` for each package import of `code` (name None: `import m`).

    Only the import statements are parsed: a doc fragment may elide the rest
    (`model.fit(x, y, ...)`).
    """
    for statement in IMPORT.findall(code):
        (node,) = ast.parse(statement.split("#")[0].strip()).body
        if isinstance(node, ast.ImportFrom):
            yield from ((node.module, alias.name) for alias in node.names)
        else:
            yield from ((alias.name, None) for alias in node.names)


def test_the_public_api_is_complete_and_imports_no_tensorflow():
    names = set(keras_gblend.__all__)
    assert len(names) == len(keras_gblend.__all__), "a name listed twice"
    missing = sorted(n for n in names if n not in vars(keras_gblend))
    assert not missing, f"__all__ names what keras_gblend lacks: {missing}"
    lazy = set(keras_gblend._LAZY)
    assert not lazy & names and lazy <= set(dir(keras_gblend))
    for name in sorted(lazy):
        assert getattr(keras_gblend, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'OGMGEModel'"):
        keras_gblend.OGMGEModel  # noqa: B018 (a competing method: baselines)
    # TensorFlow-only modules stay unloaded (tests/backends/test_imports.py
    # checks on JAX and PyTorch that TensorFlow itself is not imported).
    code = (
        "import sys\nfrom keras_gblend import *\n"
        "print(*sorted(m for m in sys.modules if m.startswith(%r)))"
    )
    data_tf = ("audio", "datasets", "files", "pipelines", "tfrecord")
    tf_only = ("keras_gblend.tf.", "keras_gblend.baselines") + tuple(
        f"keras_gblend.data.{name}" for name in data_tf
    )
    result = run_python("-c", code % (tf_only,), timeout=120)
    assert result.stdout.split() == [], "imported with the package"


@pytest.mark.parametrize("source", SOURCES)
def test_the_docs_import_only_the_public_api(source):
    imports = [i for code in _code_blocks(source) for i in _package_imports(code)]
    private = sorted({m for m, _ in imports if m not in PUBLIC_MODULES})
    assert not private, f"{source} imports from outside the public API: {private}"
    for module, name in imports:
        if name is not None:  # Every symbol it imports exists there, as
            # `from module import name` finds it: an attribute or a submodule.
            try:
                found = getattr(importlib.import_module(module), name)
            except AttributeError:
                found = importlib.import_module(f"{module}.{name}")
            assert found is not None


@pytest.mark.parametrize("source", [s for s in SOURCES if s != INTERNALS])
def test_the_docs_cite_the_package_by_its_public_names(source):
    cited = {n for n in _dotted_names(_read(source)) if n.startswith("keras_gblend.")}
    private = sorted(n for n in cited if n.split(".")[1] not in PUBLIC)
    assert not private, f"{source} cites names outside the public API: {private}"


def test_the_public_api_checks_find_what_they_look_for():
    code = (
        "import keras_gblend\nfrom keras_gblend import data\n"
        "from keras_gblend.blend.formula import blend_weights\n"
        "def f():\n    from keras_gblend.tf import export  # lazy\n"
        "from keras_gblend import (\n    CSVLogger,\n    mlp_encoder,\n)\n"
        "model.fit(x, y, ...)\n"
    )
    assert list(_package_imports(code)) == [
        ("keras_gblend", None),
        ("keras_gblend", "data"),
        ("keras_gblend.blend.formula", "blend_weights"),
        ("keras_gblend.tf", "export"),
        ("keras_gblend", "CSVLogger"),
        ("keras_gblend", "mlp_encoder"),
    ]
    assert "export_saved_model" in PUBLIC and "data" in PUBLIC
    assert "formula" not in PUBLIC and "tf" not in PUBLIC
