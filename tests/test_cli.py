"""``segparity report``: the table, the JSON rows, the exit status."""

import contextlib
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segparity import cli
from segparity.comparison.trace import FLOOR_LIMIT

KEYS = ["arch", "config", "quantity", "max_abs", "max_rel", "rtol", "atol", "passed"]


# configurations per architecture in ``segparity.parity.suite``: segparity's own networks (the default suite runs
# these), then torchvision's six, one case each (slow: ``test_report_checks_torchvisions_models``)
CONFIGS = {"deeplabv3plus": 2, "fcn": 5, "segnet": 3, "unet": 10, "lesson_segnet": 2, "lesson_unet": 2}
TORCHVISION = ("deeplabv3_mobilenet_v3_large", "deeplabv3_resnet101", "deeplabv3_resnet50", "fcn_resnet101",
               "fcn_resnet50", "lraspp_mobilenet_v3_large")


def _run_report(path, arches) -> tuple:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["report", "--arch", *arches, "--json", str(path)])
    document = json.loads(path.read_text())
    assert list(document) == ["environment", "rows", "stock_rows"]
    return status, document["rows"], out.getvalue(), document["environment"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The whole default report (24 configurations, about 35 s on 2 cores): the slow tests' (``.ci/run`` runs them,
    and a second time under AVX2 kernels and one thread)."""
    return _run_report(tmp_path_factory.mktemp("report") / "report.json", list(CONFIGS))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One U-Net through every quantity (model flags give one configuration), for the default suite: the exit
    status, the JSON document and the printed text."""
    path = tmp_path_factory.mktemp("quick") / "report.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["report", "--arch", "unet", "--model-option", "base_channels=8", "--model-option", "depth=3",
                           "--json", str(path)])
    document = json.loads(path.read_text())
    assert list(document) == ["environment", "rows", "stock_rows"]
    return status, document, out.getvalue()


@pytest.fixture(scope="module")
def quick_report(quick_run):
    status, document, out = quick_run
    return status, document["rows"], out, document["environment"]


QUANTITIES = {"logits_eval", "logits_train", "loss_bce", "loss_ce", "grad_input_ce", "grad_weights_ce", "bn_running",
              "weights_after_sgd", "weights_after_adam"}


def test_report_passes_and_writes_documented_json(quick_report):
    status, rows, _, _ = quick_report
    assert status == 0
    assert rows and all(list(row) == KEYS for row in rows)
    assert all(row["passed"] for row in rows)
    assert QUANTITIES <= {row["quantity"] for row in rows}
    assert all(row["rtol"] == 1e-4 and 1e-5 <= row["atol"] <= 1e-5 + 2 * FLOOR_LIMIT for row in rows)


def test_report_measures_the_stock_flavour_against_the_parity_flavour(quick_run):
    """``layers="stock"`` rows: torch's ``nn.BatchNorm2d`` is segparity's torch BatchNorm exactly (0 on every row);
    ``keras.layers.BatchNormalization`` updates the moving variance with the biased batch variance, a factor (n-1)/n
    off torch's: over the tolerance, by construction, however the data fall. The verdict ignores these rows."""
    status, document, out = quick_run
    stock = document["stock_rows"]
    assert status == 0 and 'Stock layers (build_model(..., layers="stock")' in out
    torch_rows = [r for r in stock if r["config"].endswith(" torch stock")]
    keras_rows = {r["quantity"]: r for r in stock if r["config"].endswith(" tf stock")}
    assert QUANTITIES <= {r["quantity"] for r in torch_rows} and all(r["max_abs"] == 0.0 for r in torch_rows)
    assert QUANTITIES <= set(keras_rows) and not keras_rows["bn_running"]["passed"]
    assert keras_rows["logits_eval"]["passed"] and keras_rows["logits_train"]["passed"]


@pytest.mark.slow
def test_every_configuration_of_the_report_passes(report):
    status, rows, out, _ = report
    assert status == 0
    assert rows and all(list(row) == KEYS for row in rows)
    assert all(row["passed"] for row in rows)
    assert out.count("(equal)") == sum(CONFIGS.values()) and "DIFFERENT" not in out
    assert "unet [same/transpose/bn d3 c8 2x3x32x32 w:torch]: parameters torch 121,139 / tf 121,139" in out
    assert "unet [lesson preset 1x3x64x64 w:torch]: parameters torch 981,121 / tf 981,121" in out
    assert "segnet [lesson preset 1x3x64x64 w:torch]: parameters torch 785,281 / tf 785,281" in out
    for arch, count in CONFIGS.items():
        assert len({row["config"] for row in rows if row["arch"] == arch}) == count, arch
    assert QUANTITIES <= {row["quantity"] for row in rows}
    # the two-headed (instance) U-Net: its embedding, discriminative loss and that loss's weight gradients
    embedding = {row["quantity"] for row in rows if "+embedding" in row["config"]}
    assert {"logits_eval", "embedding_eval", "loss_discriminative", "grad_weights_discriminative"} <= embedding
    # atol = 1e-5 plus twice torch's own float32 error on that quantity (docs/pitfalls.md, float32_floor)
    assert all(row["rtol"] == 1e-4 and 1e-5 <= row["atol"] <= 1e-5 + 2 * FLOOR_LIMIT for row in rows)


README = Path(__file__).resolve().parents[1] / "README.md"
OWN_FIGURES = (r"(\d+) configurations of segparity's own networks \((\d+) U-Net, (\d+) SegNet, (\d+) FCN, "
               r"(\d+) DeepLabV3\+, (\d+) of the lesson exercises' networks\), (\d+) rows")
TORCHVISION_FIGURES = r"one of each of torchvision's (\d+) segmentation models, (\d+) rows"


@pytest.mark.slow
def test_readme_figures_of_the_report_are_the_reports(report):
    """The README quotes how many configurations and rows ``segparity report`` has for segparity's own networks;
    they must be this run's (torchvision's: ``test_report_checks_torchvisions_models``)."""
    _, rows, out, _ = report
    quoted = re.search(OWN_FIGURES, README.read_text())
    assert quoted, "README: the report's figures sentence is gone"
    configs = {arch: len({row["config"] for row in rows if row["arch"] == arch}) for arch in CONFIGS}
    assert [int(g) for g in quoted.groups()] == [sum(configs.values()), configs["unet"], configs["segnet"],
                                                 configs["fcn"], configs["deeplabv3plus"],
                                                 configs["lesson_segnet"] + configs["lesson_unet"], len(rows)]


@pytest.mark.slow
def test_report_checks_torchvisions_models(report, tmp_path):
    """``segparity report`` on torchvision's six models (about 3 minutes): every row passes, the auxiliary output is
    a row where the model has one, ResNet's cases run in float64; the README's figures and transcript are these."""
    status, rows, out, _ = _run_report(tmp_path / "torchvision.json", TORCHVISION)
    assert status == 0 and rows and all(row["passed"] for row in rows)
    configs = {(row["arch"], row["config"]) for row in rows}
    assert {arch for arch, _ in configs} == set(TORCHVISION) and len(configs) == len(TORCHVISION)
    for arch in TORCHVISION:
        (config,) = {row["config"] for row in rows if row["arch"] == arch}
        quantities = {row["quantity"] for row in rows if row["arch"] == arch}
        assert {"grad_input_ce", "grad_weights_ce", "weights_after_sgd", "weights_after_adam"} <= quantities
        assert ("aux_eval" in quantities) == ("+aux" in config), config
        assert ("resnet" in arch) == config.endswith("float64"), config
    readme = README.read_text()
    quoted = re.search(TORCHVISION_FIGURES, readme)
    assert quoted and [int(g) for g in quoted.groups()] == [len(TORCHVISION), len(rows)]
    own = len(report[1])
    total = own + len(rows), sum(CONFIGS.values()) + len(TORCHVISION)
    transcript = re.search(r"^(\d+) passed, 0 failed \((\d+) configurations, [\d.]+ s\)$", readme, flags=re.M)
    assert transcript and tuple(int(g) for g in transcript.groups()) == total
    assert re.search(rf"^\.\.\. \({total[0]} rows: every configuration x quantity\)$", readme, flags=re.M)


def test_report_prints_versions_tf32_table_and_parameter_counts(quick_report):
    status, _, out, environment = quick_report
    assert status == 0
    assert "torch 2." in out and "tensorflow 2." in out and "keras 3." in out
    assert "TF32 switched off for parity" in out
    # the versions, devices, TF32 and determinism settings it ran under, printed and in the JSON
    assert "torch use_deterministic_algorithms=False" in out and "tf op_determinism=False" in out
    assert environment["torch"]["version"].startswith("2.") and environment["torch"]["devices"][0] == "cpu"
    assert "tensor_float_32_execution=False" in environment["tf"]["tf32"]
    assert "cudnn.deterministic" in environment["torch"]["determinism"] and environment["machine"]["python"]
    assert re.search(r"\| arch +\| config", out)
    assert out.count("(equal)") == 1 and "DIFFERENT" not in out
    assert re.search(r"^unet \[.*\]: parameters torch ([\d,]+) / tf \1 \(equal\)", out, flags=re.M)
    assert "23 passed, 0 failed (1 configuration" in out


def test_report_seed_and_kink_redraw_note(monkeypatch, capsys):
    """The report's note on a batch set aside, on the kink built exactly in ``tests/kinkcase.py``
    (``--seed`` gives the first data seed)."""
    from segparity.parity import suite
    from tests.kinkcase import planted

    case = planted(monkeypatch)
    monkeypatch.setitem(suite.SUITES, "unet", lambda seed=0: [dataclasses.replace(case, seed=seed)])
    monkeypatch.setattr(suite, "stock_rows", lambda *args, **kwargs: [])  # not what this test is about
    status = cli.main(["report", "--arch", "unet", "--seed", str(case.seed)])
    out = capsys.readouterr().out
    assert status == 0
    assert f"; batch {case.seed} set aside: gradients split at a ReLU/max-pool kink (margin 0.0)" in out


def test_report_fails_when_a_row_fails(monkeypatch, capsys, tmp_path):
    from segmentation_tf import harness

    real = harness.compute_trace

    def off_by_a_little(*args, **kwargs):
        trace = real(*args, **kwargs)
        trace["logits_eval"] = trace["logits_eval"] + np.float32(1e-3)
        return trace

    monkeypatch.setattr(harness, "compute_trace", off_by_a_little)
    from segparity.parity import suite

    first_two = suite.SUITES["fcn"]
    monkeypatch.setitem(suite.SUITES, "fcn", lambda seed=0: first_two(seed)[:2])  # two configurations suffice
    monkeypatch.setattr(suite, "stock_rows", lambda *args, **kwargs: [])  # informational rows: not the verdict
    status = cli.main(["report", "--arch", "fcn", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL fcn" in out and "logits_eval" in out
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [r["passed"] for r in rows if r["quantity"] == "logits_eval"] == [False, False]


@pytest.mark.parametrize("command", [["report"], ["diff"], ["convert", "a.safetensors", "b.pt"],
                                     ["train", "--framework", "torch", "--out", "r"]])
def test_unknown_arch_is_a_usage_error(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--arch", "segnet9"])
    assert exit_.value.code == 2
    assert ("argument --arch: invalid choice: 'segnet9' (choose from 'deeplabv3_mobilenet_v3_large', "
            "'deeplabv3_resnet101', 'deeplabv3_resnet50', 'deeplabv3plus', 'fcn', 'fcn_resnet101', 'fcn_resnet50', "
            "'lesson_segnet', 'lesson_unet', 'lraspp_mobilenet_v3_large', 'segnet', 'unet')") in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "segparity.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("segparity ")
