"""House rules that code review would otherwise have to catch: shared/ is framework-free, and the two
framework packages mirror each other file for file and name for name."""

import ast
import re
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK_MODULES = {"torch", "tensorflow", "keras"}


# --- the import graph, read from the source (ast): static imports anywhere in a file, and the modules named
# to importlib (a string "segmentation_torch.harness", or an f-string "segmentation_{framework}.weights",
# which names both twins)
TOPS = {"shared": "segparity", "segmentation_torch": "segmentation_torch", "segmentation_tf": "segmentation_tf"}
FRAMEWORK_PACKAGES = ("segmentation_torch", "segmentation_tf")
# The only top-level entries of shared/ that may hold modules which run a framework (issue 22: at most three).
DRIVER_ENTRIES = ("cli.py", "parity")


def module_name(path: Path) -> str:
    """shared/parity/suite.py -> segparity.parity.suite; shared/data/__init__.py -> segparity.data."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = TOPS[parts[0]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> dict[str, Path]:
    return {module_name(p): p for top in TOPS for p in sorted((ROOT / top).rglob("*.py"))}


def _named_modules(node) -> list[str]:
    """Module names a string or f-string in the source may hand to importlib."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value.split(".")[0] in FRAMEWORK_PACKAGES else []
    if isinstance(node, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        if text.startswith("segmentation_{}"):
            return [text.replace("segmentation_{}", package, 1).split("{")[0].rstrip(".") for package in FRAMEWORK_PACKAGES]
    return []


def imports(path: Path) -> set[str]:
    """Every module name ``path`` imports, statically (anywhere in the file) or by name through importlib."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
        else:
            found |= set(_named_modules(node))
    return found


def project_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a name resolved to its longest known module prefix)."""
    files = project_files()
    graph = {}
    for name, path in files.items():
        edges = set()
        for imported in imports(path):
            parts = imported.split(".")
            for k in range(len(parts), 0, -1):
                candidate = ".".join(parts[:k])
                if candidate in files:
                    if candidate != name:
                        edges.add(candidate)
                    break
        graph[name] = edges
    return graph


def runs_a_framework(name: str, path: Path) -> bool:
    return any(i.split(".")[0] in FRAMEWORK_MODULES | set(FRAMEWORK_PACKAGES) for i in imports(path))


def drivers() -> set[str]:
    """The segparity modules that import torch, TensorFlow, Keras or a framework package, directly, through
    importlib, or through another segparity module that does."""
    files, graph = project_files(), project_graph()
    found = {n for n, p in files.items() if n.startswith("segparity") and runs_a_framework(n, p)}
    while True:
        more = {n for n in files if n.startswith("segparity") and n not in found and graph[n] & found}
        if not more:
            return found
        found |= more


def _entry(name: str) -> str:
    """segparity.parity.suite -> "parity"; segparity.cli -> "cli.py"."""
    path = project_files()[name].relative_to(ROOT / "shared")
    return path.parts[0]


def test_the_modules_that_run_a_framework_sit_together_and_no_framework_package_imports_them():
    found = drivers()
    assert {"segparity.cli", "segparity.parity.suite", "segparity.parity.layerdiff",
            "segparity.parity.convert", "segparity.parity.machine"} <= found  # the rule sees importlib names
    assert len(DRIVER_ENTRIES) <= 3
    outside = sorted(n for n in found if _entry(n) not in DRIVER_ENTRIES)
    assert outside == [], f"modules that run a framework outside {DRIVER_ENTRIES}: {outside}"
    graph = project_graph()
    driver_modules = {n for n in graph if n.startswith("segparity") and _entry(n) in DRIVER_ENTRIES
                      and n != "segparity"}
    offenders = sorted(f"{n} imports {sorted(graph[n] & driver_modules)}" for n in graph
                       if n.split(".")[0] in FRAMEWORK_PACKAGES and graph[n] & driver_modules)
    assert offenders == []


def test_no_import_circle_anywhere():
    graph = project_graph()
    state: dict[str, int] = {}
    circles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_the_neutral_core_never_imports_a_framework():
    offenders = sorted(n for n, p in project_files().items()
                       if n.startswith("segparity") and _entry(n) not in DRIVER_ENTRIES and runs_a_framework(n, p))
    assert offenders == []


def _modules(package):
    """Every module of a framework package, subfolders included, as a dotted name relative to it."""
    return sorted(".".join(p.relative_to(ROOT / package).with_suffix("").parts) for p in (ROOT / package).rglob("*.py"))


def test_every_module_has_its_twin():
    assert _modules("segmentation_torch") == _modules("segmentation_tf")


def _public(module):
    out = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            out[name] = obj
    return out


# Framework facts, documented in the docstrings of the methods named here: Keras layers take a
# ``name`` (and **kwargs for keras.Model), torch modules don't; losses' call order is each framework's own.
IGNORED_PARAMETERS = {"name", "kwargs"}


def _parameters(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = inspect.signature(target).parameters.values()
    return [(p.name, p.kind, p.default) for p in params if p.name not in IGNORED_PARAMETERS | {"self"}]


@pytest.mark.parametrize("module", _modules("segmentation_torch"))
def test_twin_modules_share_public_names_and_arguments(module):
    if module.endswith("__init__") and module != "__init__":  # a subpackage's docstring-only __init__
        return
    if module == "__init__":
        import segmentation_tf
        import segmentation_torch

        assert segmentation_torch.__all__ == segmentation_tf.__all__
        return
    torch_mod = importlib.import_module(f"segmentation_torch.{module}")
    tf_mod = importlib.import_module(f"segmentation_tf.{module}")
    torch_public, tf_public = _public(torch_mod), _public(tf_mod)
    assert list(torch_public) == list(tf_public), "same public names in the same order"
    for name in torch_public:
        assert _parameters(torch_public[name]) == _parameters(tf_public[name]), name


def test_every_package_is_listed_for_installation():
    """pyproject lists packages explicitly: a new sub-package missing there works in an editable install
    and is silently left out of a wheel."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"segparity": "shared"}  # the folder shared/ installs as segparity
    found = {module_name(p.parent / "__init__.py") for top in ("shared", "segmentation_torch", "segmentation_tf")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found == set(setuptools["packages"])


# Files that name the old import paths on purpose: the changelog lists them, the committed benchmark records
# are dated logs, tests/test_wheel.py imports a *user's* package called shared, and this test names the patterns.
OLD_NAME_ALLOWED = ("docs/changelog.md", "benchmarks/results/", "tests/test_wheel.py", "tests/test_layout_rules.py")


def test_no_code_or_doc_imports_the_old_name_shared():
    """The import name is ``segparity`` everywhere (the folder stays ``shared/``): ``import shared``,
    ``from shared ...`` and a dotted ``shared.module`` in code or docs are left-overs."""
    pattern = re.compile(r"\bfrom shared\b(?!/)|\bimport shared\b(?!/)|(?<![/\w])shared\.[a-z_]+")
    offenders = []
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if (path.suffix not in (".py", ".md", ".toml", ".txt", ".cfg") and path.name != "run") or not path.is_file() \
                or relative.startswith((".git/", "build/")) or ".egg-info" in relative \
                or relative.startswith(OLD_NAME_ALLOWED):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()[:100]}")
    assert offenders == []
