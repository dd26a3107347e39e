"""``segparity report``: the table, the JSON rows, the exit status."""

import json
import subprocess
import sys

import numpy as np
import pytest

from shared import cli

KEYS = ["arch", "config", "quantity", "max_abs", "max_rel", "rtol", "atol", "passed"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.json"
    return cli.main(["report", "--json", str(path)]), json.loads(path.read_text())


def test_report_passes_and_writes_documented_json(report):
    status, rows = report
    assert status == 0
    assert rows and all(list(row) == KEYS for row in rows)
    assert all(row["passed"] for row in rows)
    configs = {row["config"] for row in rows}
    assert len(configs) == 8  # both paddings x both up-samplings x BN on/off
    quantities = {row["quantity"] for row in rows}
    assert {"logits_eval", "logits_train", "loss_bce", "loss_ce", "grad_input_ce", "grad_weights_ce",
            "bn_running", "weights_after_sgd", "weights_after_adam"} <= quantities
    assert all(row["rtol"] == 1e-4 and row["atol"] == 1e-5 for row in rows)


def test_report_prints_versions_tf32_and_table(capsys):
    status = cli.main(["report", "--seed", "3"])
    out = capsys.readouterr().out
    assert status == 0
    assert "torch 2." in out and "tensorflow 2." in out and "keras 3." in out
    assert "TF32 switched off for parity" in out
    assert "| arch | config" in out
    assert out.count("(equal)") == 8 and "parameters torch 121,139 / tf 121,139" in out
    assert out.count("data seed") == 8 and "kink" in out
    assert "passed, 0 failed" in out


def test_report_fails_when_a_row_fails(monkeypatch, capsys, tmp_path):
    from segmentation_tf import harness

    real = harness.compute_trace

    def off_by_a_little(*args, **kwargs):
        trace = real(*args, **kwargs)
        trace["logits_eval"] = trace["logits_eval"] + np.float32(1e-3)
        return trace

    monkeypatch.setattr(harness, "compute_trace", off_by_a_little)
    status = cli.main(["report", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL unet" in out and "logits_eval" in out
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["passed"] for r in rows if r["quantity"] == "logits_eval"] == [False] * 8


def test_unknown_arch_is_a_usage_error(capsys):
    assert cli.main(["report", "--arch", "segnet9"]) == 2
    assert "unknown --arch segnet9; known: unet" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "shared.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("segparity ")
