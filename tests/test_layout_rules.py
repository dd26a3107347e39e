"""House rules that code review would otherwise have to catch: shared/ is framework-free, and the two
framework packages mirror each other file for file and name for name."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK_MODULES = {"torch", "tensorflow", "keras"}


def test_shared_never_imports_a_framework():
    offenders = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in FRAMEWORK_MODULES | {"segmentation_torch", "segmentation_tf"}]
    assert offenders == []


def _modules(package):
    return sorted(p.stem for p in (ROOT / package).glob("*.py"))


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

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".")
             for top in ("shared", "segmentation_torch", "segmentation_tf") for p in (ROOT / top).rglob("__init__.py")}
    assert found == listed
