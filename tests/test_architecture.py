"""The import graph keeps the shape docs/architecture.md draws.

The graph is read from the source with `ast` (nothing is imported): one node
per module of keras_gblend/, experiments/ and tools/ (a package's
`__init__.py` is the package), one edge per import statement, wherever it is
(imports inside functions count: a lazy import is still a dependency; so do
the names a module imports with `importlib.import_module` or lists in its
`_LAZY` table of names imported on first access).
`from package import name` is an edge to the submodule `package.name` when
there is one, else to the package. The assertions:

- no cycle between modules;
- no module imports a higher layer: common < data < blend < model < training
  < report < tf, baselines < the `keras_gblend` facade (the public API) <
  experiments, tools;
- the longest chain of imports inside the package is at most `MAX_DEPTH`
  modules (issue 18's bound), and so is the longest one with experiments/ and
  tools/ (`MAX_DEPTH_WITH_PROGRAMS`; docs/architecture.md says how the
  experiments' three levels fit under it).

Each failure names the chain at fault.
"""

import ast
import functools
import os

import pytest

from tests.conftest import REPO_ROOT

ROOTS = ("keras_gblend", "experiments", "tools")
# Folder (or root) -> layer; a module may import its own layer and below.
LAYERS = {
    "keras_gblend.common": 0,
    "keras_gblend.data": 1,
    "keras_gblend.blend": 2,
    "keras_gblend.model": 3,
    "keras_gblend.training": 4,
    "keras_gblend.report": 5,
    "keras_gblend.tf": 6,
    "keras_gblend.baselines": 6,
    "keras_gblend": 7,  # The facade: the public API imports every layer.
    "experiments": 8,
    "tools": 8,
}
MAX_DEPTH = 8
MAX_DEPTH_WITH_PROGRAMS = 8  # Issue 18: the same bound with the programs.


def _module_name(path):
    parts = os.path.relpath(path, REPO_ROOT)[: -len(".py")].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.cache
def _sources():
    """`{module name: source path}` of every module under `ROOTS`."""
    sources = {}
    for root in ROOTS:
        for folder, _, files in os.walk(os.path.join(REPO_ROOT, root)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    sources[_module_name(path)] = path
    return sources


def _imports(module, tree, modules):
    """`(imported module, line)` for every import of `tree` into `modules`."""
    is_package = _sources()[module].endswith("__init__.py")
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _known(alias.name, package, modules), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # Relative: from the package `level - 1` up.
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield _known(f"{base}.{alias.name}", package, modules), node.lineno
    for node in _dynamic_imports(tree):
        if node.value in modules:
            yield node.value, node.lineno


def _dynamic_imports(tree):
    """The module names (string constants) that `tree` imports by name: the
    argument of `importlib.import_module(...)`, and every name in a `_LAZY`
    table (a package's names imported on first access)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in (
            "import_module",
        ):
            if node.args and isinstance(node.args[0], ast.Constant):
                yield node.args[0]
        elif isinstance(node, ast.Assign) and any(
            getattr(target, "id", None) == "_LAZY" for target in node.targets
        ):
            yield from (
                n
                for n in ast.walk(node.value)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            )


def _known(name, package, modules):
    """The module of `modules` that `name` imports, or None.

    A bare name next to a tools/ script (`import bench_timing`) is that
    sibling: tools run as scripts with their folder on `sys.path`.
    """
    if package == "tools" and f"tools.{name}" in modules:
        return f"tools.{name}"
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


@functools.cache
def import_graph():
    """`{module: {imported module: first line}}` over `ROOTS`, read with `ast`."""
    modules = set(_sources())
    graph = {}
    for module, path in _sources().items():
        with open(path) as handle:
            tree = ast.parse(handle.read(), path)
        edges = {}
        for target, line in _imports(module, tree, modules):
            if target and target != module and not module.startswith(f"{target}."):
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def layer(module):
    """The layer of `module`: that of the longest `LAYERS` prefix."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} is in no layer of LAYERS; add its folder")


def find_cycle(graph):
    """One cycle of `graph` as a list of modules (first == last), or None."""
    done, on_path = set(), []

    def visit(node):
        if node in on_path:
            return on_path[on_path.index(node) :] + [node]
        if node in done:
            return None
        on_path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        on_path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def longest_chain(graph):
    """The longest chain of imports `[importer, imported, ...]` of an acyclic graph."""

    @functools.cache
    def chain_from(node):
        chains = [chain_from(t) for t in sorted(graph.get(node, ()))]
        return [node, *max(chains, key=len, default=[])]

    return max((chain_from(n) for n in sorted(graph)), key=len, default=[])


def _chain(modules):
    return " -> ".join(modules)


def _line(importer, imported):
    path = os.path.relpath(_sources()[importer], REPO_ROOT)
    return f"{path}:{import_graph()[importer][imported]}"


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    # One module each of the three roots, and known edges of each kind: an
    # import at the top, one inside a function, a sibling tools/ script.
    assert {"keras_gblend.blend.formula", "experiments.methods", "tools.bench"} <= set(
        graph
    )
    assert "keras_gblend.blend.formula" in graph["keras_gblend.blend.estimators"]
    assert "keras_gblend.data.datasets" in graph["keras_gblend.data.av_digits"]
    assert "tools.bench_timing" in graph["tools.bench"]
    assert "keras_gblend.data" in graph["keras_gblend"]  # `from pkg import name`
    assert "keras_gblend.tf.export" in graph["keras_gblend"]  # `_LAZY`
    assert all(n.startswith(ROOTS) for edges in graph.values() for n in edges)


def test_the_checks_find_what_they_look_for():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    del graph["c"]["a"]
    assert find_cycle(graph) is None
    assert longest_chain(graph) == ["d", "a", "b", "c"]
    assert layer("keras_gblend.model.heads") == 3 and layer("keras_gblend") == 7
    assert layer("tools.bench") == 8
    with pytest.raises(KeyError, match="somewhere.else"):
        layer("somewhere.else")


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    if cycle:
        lines = ", ".join(_line(a, b) for a, b in zip(cycle, cycle[1:]))
        pytest.fail(f"import cycle: {_chain(cycle)} ({lines})")


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{importer} (layer {layer(importer)}) -> {imported} (layer "
        f"{layer(imported)}) at {_line(importer, imported)}"
        for importer, edges in sorted(import_graph().items())
        for imported in sorted(edges)
        if layer(imported) > layer(importer)
    ]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def _check_longest_chain(graph, limit):
    if find_cycle(graph):
        pytest.skip("the graph has a cycle (test_no_import_cycle)")
    chain = longest_chain(graph)
    assert len(chain) <= limit, (
        f"the longest chain of imports is {len(chain)} modules (at most "
        f"{limit}): {_chain(chain)}"
    )


def test_the_longest_chain_of_imports_in_the_package_is_short():
    package = {
        module: {target: line for target, line in edges.items()}
        for module, edges in import_graph().items()
        if module.startswith("keras_gblend")
    }
    _check_longest_chain(package, MAX_DEPTH)


def test_the_longest_chain_with_the_programs_is_short():
    _check_longest_chain(import_graph(), MAX_DEPTH_WITH_PROGRAMS)


def _package_modules():
    """`{sub-package: [module short names]}` of keras_gblend's folders."""
    folders = {}
    for module in _sources():
        parts = module.split(".")
        if parts[0] == "keras_gblend" and len(parts) == 3:
            folders.setdefault(".".join(parts[:2]), []).append(parts[2])
    return folders


def test_docs_architecture_md_names_every_module_and_layer():
    with open(os.path.join(REPO_ROOT, "docs", "architecture.md")) as handle:
        text = handle.read()
    paths = [
        os.path.relpath(path, REPO_ROOT)
        for module, path in _sources().items()
        if module.startswith("keras_gblend.") and not path.endswith("__init__.py")
    ]
    missing = sorted(p for p in paths if f"`{p}`" not in text)
    assert not missing, f"docs/architecture.md does not say what these own: {missing}"
    folders = [f"`{p.replace('.', '/')}/`" for p in LAYERS if p.count(".") == 1]
    assert all(folder in text for folder in folders), folders


def test_each_folder_docstring_lists_its_modules():
    unlisted = []
    for package, modules in sorted(_package_modules().items()):
        if package == "keras_gblend.data":
            continue  # Its docstring describes the namespace; it re-exports.
        with open(_sources()[package]) as handle:
            doc = ast.get_docstring(ast.parse(handle.read())) or ""
        unlisted += [f"{package}.{m}" for m in modules if f"    {m}: " not in doc]
    assert not unlisted, f"modules missing from their folder's docstring: {unlisted}"
