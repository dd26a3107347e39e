"""The benchmark harness runs end to end (``python -m benchmarks --quick``) so it cannot rot; timings
themselves are never asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_writes_rows_table_and_chart(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", str(tmp_path / "b.json"),
                           "--png", str(tmp_path / "b.png"), "--threads", "2"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {r["framework"] for r in rows} == {"torch", "tf"}
    assert all(r["error"] is None for r in rows), [r["error"] for r in rows if r["error"]]
    gemm = [r for r in rows if r["task"] == "gemm"]
    assert len(gemm) == 2 and all(r["median_s"] > 0 and r["flops"] == 2 * 1024 ** 3 for r in gemm)
    timed = [r for r in rows if r["task"] != "gemm"]
    assert {r["task"] for r in timed} == {"forward", "train_step"}
    for r in timed:
        assert r["median_s"] > 0 and r["iqr_s"] >= 0 and r["repeats"] >= 3 and r["peak_rss_mib"] > 100
        assert r["flops"] > 0 and 0 < r["fraction_of_gemm_peak"] < 2  # counted once, shared by both frameworks
        assert "intra-op 2" in r["threads"]
    assert "| case | task | torch best | tf best | slower | ratio |" in done.stdout
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_best_modes_and_ratio():
    def row(fw, mode, ms):
        return dict(framework=fw, mode=mode, task="forward", label="u", median_s=ms / 1e3, iqr_s=0.0, error=None,
                    flops=2e9 if fw == "torch" else None, peak_rss_mib=1.0)
    rows = report.with_rates([row("torch", "eager", 10), row("torch", "channels_last", 8), row("tf", "function", 12),
                              dict(row("tf", "xla", 1), error="no XLA", median_s=None)])
    (summary,) = report.best_modes(rows)
    assert summary["torch"]["mode"] == "channels_last" and summary["tf"]["mode"] == "function"
    assert summary["slower"] == "tf" and summary["ratio"] == pytest.approx(1.5)
    assert rows[2]["flops"] == 2e9 and rows[2]["gflops"] == pytest.approx(2e9 / 0.012 / 1e9)


def test_suite_times_sums_each_file():
    from benchmarks.suite_times import per_file

    output = ("12.34s call     tests/test_train_learns.py::test_unet[torch]\n"
              "0.50s setup    tests/test_cli.py::test_report\n1.00s call     tests/test_cli.py::test_report\n"
              "(3 durations < 0.005s hidden.  Use -vv to show these durations.)\n")
    assert per_file(output) == {"tests/test_train_learns.py": 12.34, "tests/test_cli.py": 1.5}
