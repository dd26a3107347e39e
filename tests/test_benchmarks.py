"""The benchmark harness runs end to end (``python -m benchmarks --quick``) so it cannot rot; timings
themselves are never asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import cases, report
from benchmarks.__main__ import cpu_has_native_bf16

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
    expected_precisions = {"fp32", "bf16"} if cpu_has_native_bf16() else {"fp32"}
    assert {r["precision"] for r in rows} == expected_precisions
    gemm = [r for r in rows if r["task"] == "gemm"]
    assert len(gemm) == 2 * len(expected_precisions)
    assert all(r["median_s"] > 0 and r["flops"] == 2 * 1024 ** 3 for r in gemm)
    timed = [r for r in rows if r["task"] != "gemm"]
    assert {r["task"] for r in timed} == {"forward", "train_step"}
    for r in timed:
        assert r["median_s"] > 0 and r["iqr_s"] >= 0 and r["repeats"] >= 3 and r["peak_rss_mib"] > 100
        assert r["flops"] == cases.QUICK[0].flops(r["task"])  # counted from the spec, the same for both
        assert 0 < r["fraction_of_gemm_peak"] < 2 and r["peak_device_mib"] is None  # CPU: no allocator peak
        assert "intra-op 2" in r["threads"]
    profiled = [r for r in timed if "profiler_flops" in r]
    assert len(profiled) == 2 and all(r["profiler_flops"] == r["flops"] for r in profiled)
    assert "equal torch.utils.flop_counter's count on all 2 case/task pairs" in done.stdout
    assert "| case | task | precision | torch best | tf best | slower | ratio |" in done.stdout
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_cuda_without_a_gpu_is_one_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--device", "cuda", "--framework", "torch"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 1
    assert "benchmarks: torch fp32 GEMM failed: RuntimeError: --device cuda: torch 2.13.0" in done.stderr
    assert "sees no CUDA device" in done.stderr


def test_best_modes_and_ratio_never_mix_precisions():
    def row(fw, mode, ms, precision="fp32"):
        return dict(framework=fw, mode=mode, task="forward", label="u", precision=precision, median_s=ms / 1e3,
                    iqr_s=0.0, error=None, flops=2e9, peak_rss_mib=1.0)
    gemm = [dict(row(fw, "gemm", 10, p), task="gemm", label="gemm", flops=2e10) for fw in ("torch", "tf")
            for p in ("fp32", "bf16")]
    rows = report.with_rates(gemm + [row("torch", "eager", 10), row("torch", "channels_last", 8),
                                     row("tf", "function", 12), dict(row("tf", "xla", 1), error="no XLA", median_s=None),
                                     row("torch", "channels_last", 4, "bf16"), row("tf", "function", 5, "bf16")])
    fp32, bf16 = report.best_modes(rows)
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert fp32["torch"]["mode"] == "channels_last" and fp32["tf"]["mode"] == "function"
    assert fp32["slower"] == "tf" and fp32["ratio"] == pytest.approx(1.5)
    assert bf16["ratio"] == pytest.approx(1.25)
    tf_function = rows[6]
    assert tf_function["gflops"] == pytest.approx(2e9 / 0.012 / 1e9)
    assert tf_function["fraction_of_gemm_peak"] == pytest.approx(tf_function["gflops"] / 2000)


def test_flop_check_names_a_disagreement():
    rows = [dict(label="u", task="forward", flops=10, profiler_flops=10),
            dict(label="u", task="train_step", flops=30, profiler_flops=28)]
    assert "DISAGREE" in report.flop_check(rows) and "u train_step: spec 30, profiler 28" in report.flop_check(rows)
    assert "on all 1 case/task pairs" in report.flop_check(rows[:1])


def test_suite_times_sums_each_file():
    from benchmarks.suite_times import per_file

    output = ("12.34s call     tests/test_train_learns.py::test_unet[torch]\n"
              "0.50s setup    tests/test_cli.py::test_report\n1.00s call     tests/test_cli.py::test_report\n"
              "(3 durations < 0.005s hidden.  Use -vv to show these durations.)\n")
    assert per_file(output) == {"tests/test_train_learns.py": 12.34, "tests/test_cli.py": 1.5}
