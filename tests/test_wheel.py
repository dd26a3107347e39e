"""The wheel, installed as a user installs it (no editable install), in a fresh virtual environment, used from
a folder that holds the user's own package called ``shared``: segparity's code imports as ``segparity``, so
nothing collides. Slow (it builds and installs a wheel): ``.ci/run`` runs it after the README's command."""

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_TEST = '''
import keras
import numpy as np
import torch
from torch import nn

import shared  # the user's own package, not segparity's
from segparity.parity.layerdiff import transfer_weights


def test_users_pair(assert_parity):
    assert shared.OWNER == "the user"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    twin = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same", name="c")])
    transfer_weights(model, twin, {"0": "c"})
    assert_parity(model, twin, np.ones((1, 3, 8, 8), np.float32), name_map={"0": "c"})
'''


def _run(args, cwd, env, timeout=300):
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_wheel_installs_segparity_and_works_beside_a_users_shared_package(tmp_path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT],
         cwd=tmp_path, env=os.environ)
    (wheel,) = dist.glob("segparity-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"segparity", "segmentation_torch",
                                                                      "segmentation_tf"}  # no top-level "shared"
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert all(f"{package.replace('.', '/')}/__init__.py" in names for package in listed)
    assert "segparity/parity/pytest_plugin.py" in names and "segparity/networks/specs.py" in names

    venv = tmp_path / "venv"  # system site-packages: torch and TensorFlow without a download
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp_path, env=os.environ)
    python, segparity = venv / "bin" / "python", venv / "bin" / "segparity"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], cwd=tmp_path, env=os.environ)

    user = tmp_path / "user"  # a monorepo with its own package called shared
    (user / "shared").mkdir(parents=True)
    (user / "shared" / "__init__.py").write_text('OWNER = "the user"\n')
    (user / "shared" / "networks.py").write_text("")
    (user / "test_user.py").write_text(USER_TEST)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run([python, "-c", "import segparity, segmentation_torch, shared; "
                  "print(segparity.__file__); print(segmentation_torch.__file__); print(shared.OWNER)"], user, env)
    package_file, framework_file, owner = where.split("\n")[:3]
    assert package_file.startswith(str(venv)) and framework_file.startswith(str(venv)) and owner == "the user"
    assert "usage: segparity" in _run([segparity, "--help"], user, env)
    report = _run([segparity, "report", "--arch", "unet", "--model-option", "base_channels=4",
                   "--model-option", "depth=1"], user, env)
    assert "passed, 0 failed (1 configuration," in report
    tests = _run([python, "-m", "pytest", "-p", "no:cacheprovider", "test_user.py"], user, env)
    assert "1 passed" in tests and "segparity: torch/Keras pairs checked" in tests
