"""The benchmark harness runs end to end (``python -m benchmarks --quick``) so it cannot rot; timings
themselves are never asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import cases, page, report, scaling
from benchmarks.__main__ import cpu_has_native_bf16, only_precisions_and_tasks

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
    assert len(gemm) == 2 * 2 * len(expected_precisions)  # each framework's, before and after the networks
    assert sum(r["label"].endswith("after the networks") for r in gemm) == 2 * len(expected_precisions)
    assert all(r["median_s"] > 0 and r["flops"] == 2 * 1024 ** 3 for r in gemm)
    timed = [r for r in rows if r["task"] != "gemm"]
    assert {r["task"] for r in timed} == {"forward", "train_step"}
    assert {(r["framework"], r["layers"]) for r in timed} == {(fw, layers) for fw in ("torch", "tf")
                                                                for layers in ("parity", "stock")}
    for r in timed:
        assert r["median_s"] > 0 and r["iqr_s"] >= 0 and r["repeats"] >= 3 and r["peak_rss_mib"] > 100
        assert r["flops"] == cases.QUICK[0].flops(r["task"])  # counted from the spec, the same for both
        assert 0 < r["fraction_of_gemm_peak"] < 2 and r["peak_device_mib"] is None  # CPU: no allocator peak
        assert "intra-op 2" in r["threads"]
    profiled = [r for r in timed if "profiler_flops" in r]
    assert len(profiled) == 2 and all(r["profiler_flops"] == r["flops"] for r in profiled)
    assert "equal torch.utils.flop_counter's count on all 2 case/task pairs" in done.stdout
    assert ("| case | task | precision | torch best | tf best | slower | ratio | torch parity | torch stock | "
            "tf parity | tf stock |") in done.stdout
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


def test_the_gemm_peak_is_the_faster_of_the_run_s_gemms():
    def gemm(fw, seconds, label):
        return dict(framework=fw, precision="fp32", task="gemm", mode="gemm", label=label, flops=2e10,
                    median_s=seconds, iqr_s=0.0, error=None)
    rows = [gemm("torch", 0.2, "gemm"), gemm("tf", 0.1, "gemm"), gemm("torch", 0.1, "gemm, after the networks"),
            gemm("tf", 0.2, "gemm, after the networks"), dict(gemm("tf", None, "gemm, after"), error="crashed")]
    assert report.gemm_rates(rows) == {("torch", "fp32"): [100.0, 200.0], ("tf", "fp32"): [200.0, 100.0]}
    assert report.gemm_peaks(rows) == {("torch", "fp32"): 200.0, ("tf", "fp32"): 200.0}


def test_best_modes_and_ratio_never_mix_precisions():
    def row(fw, mode, ms, precision="fp32", layers="parity"):
        return dict(framework=fw, mode=mode, task="forward", label="u", precision=precision, median_s=ms / 1e3,
                    iqr_s=0.0, error=None, flops=2e9, peak_rss_mib=1.0, layers=layers)
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
    assert fp32["tf parity"]["mode"] == "function" and fp32["tf stock"] is None


def test_the_best_of_both_flavours_is_each_framework_s_best():
    def row(fw, layers, ms):
        return dict(framework=fw, mode="m", task="train_step", label="u", precision="fp32", median_s=ms / 1e3,
                    iqr_s=0.0, error=None, flops=2e9, peak_rss_mib=1.0, layers=layers)
    (best,) = report.best_modes([row("torch", "parity", 10), row("torch", "stock", 10.5), row("tf", "parity", 14),
                                 row("tf", "stock", 11)])
    assert best["torch"]["layers"] == "parity" and best["tf"]["layers"] == "stock"
    assert best["slower"] == "tf" and best["ratio"] == pytest.approx(1.1)
    assert best["tf parity"]["median_s"] == pytest.approx(0.014)
    assert "| u | train_step | fp32 | m parity 10.0 ms | m stock 11.0 ms | tf | 1.10x |" in "\n".join(report.best_table(
        report.with_rates([row("torch", "parity", 10), row("tf", "stock", 11)])))


def _scaling_row(fw, batch, size, seconds, threads=2, peak=1000.0, baseline=400.0):
    sweep = dict(networks={"unet": {}}, sizes=(32, 64, 128), batches=(1, 2, 4), batch_size=32, size_batch={})
    return dict(framework=fw, mode="m", task="train_step", precision="fp32", case=dict(arch="unet", batch=batch, size=size),
                label=f"unet {batch}x3x{size}x{size}",
                pixels=batch * size * size, median_s=seconds, iqr_s=0.0, error=None, flops=1e9, peak_rss_mib=peak,
                baseline_rss_mib=baseline, threads_requested=threads, sweep=sweep)


def test_scaling_fits_the_exponent_of_each_sweep():
    """Time exactly 1e-6 * pixels**1.5 on the size sweep and linear on the batch sweep; memory added linear."""
    rows = [_scaling_row("torch", 1, size, 1e-6 * (size * size) ** 1.5, peak=400.0 + size * size / 1024)
            for size in (32, 64, 128)]
    rows += [_scaling_row("torch", batch, 32, 1e-6 * (32 * 32) ** 1.5 * batch, peak=400.0 + batch)
             for batch in (2, 4)]
    rows += [_scaling_row("torch", 1, size, 2e-6 * (size * size) ** 1.5, threads=1) for size in (32, 64, 128)]
    fits = {e["sweep"]: e for e in scaling.exponents(rows, 2)}
    assert fits["size"]["time_exponent"] == pytest.approx(1.5) and fits["size"]["points"] == 3
    assert fits["batch"]["time_exponent"] == pytest.approx(1.0) and fits["batch"]["points"] == 3
    assert fits["size"]["memory_exponent"] == pytest.approx(1.0)
    assert [s["speedup"] for s in scaling.speedups(rows, 2)] == pytest.approx([2.0, 2.0, 2.0])
    text = scaling.markdown(rows, 2)
    assert "| unet | torch | size | 3 | 1.50 | 1.00 |" in text and "| unet | torch | 128 |" in text
    assert scaling.fit_exponent([1.0], [2.0]) is None


def test_results_page_from_the_two_runs(tmp_path):
    gemm = [dict(framework=fw, mode="gemm", task="gemm", label="gemm", precision="fp32", median_s=0.1, iqr_s=0.0,
                 error=None, flops=2e10, peak_rss_mib=1.0, threads="2 threads") for fw in ("torch", "tf")]
    unet = cases.FULL[0].label()
    timed = [dict(framework=fw, mode="m", task="train_step", label=unet, precision="fp32", median_s=seconds, iqr_s=0.0,
                  error=None, flops=int(1.7e10), peak_rss_mib=1.0, layers=layers, threads="2 threads")
             for fw, layers, seconds in (("torch", "parity", 0.1), ("tf", "parity", 0.13), ("tf", "stock", 0.12))]
    full = dict(header="segparity benchmarks, 2026-12-06: Some CPU", versions={"torch": "x"}, cpu="Some CPU",
                rows=gemm + timed)
    scaled = dict(header="scaling", threads=2, rows=[_scaling_row("tf", 1, s, s / 1e4) for s in (32, 64)])
    (tmp_path / "full.json").write_text(json.dumps(full))
    (tmp_path / "scaling.json").write_text(json.dumps(scaled))
    (tmp_path / "profile.md").write_text("profile")
    out = tmp_path / "2026-12-06-some-cpu-2core.md"
    assert page.main(["--full", str(tmp_path / "full.json"), "--scaling", str(tmp_path / "scaling.json"),
                      "--profile", str(tmp_path / "profile.md"), "--out", str(out)]) == 0
    text = out.read_text()
    assert f"- U-Net ({unet}) training step at >= 80% of the framework's own fp32 GEMM peak" in text
    assert "torch m parity 85% (met); tf m stock 71% (NOT met)" in text
    assert f"{unet} train_step fp32: tf 1.20x" in text and "[profile.md](profile.md)" in text
    assert "![training step time and memory against pixels per batch](2026-12-06-some-cpu-2core-scaling.png)" in text
    assert (tmp_path / "2026-12-06-some-cpu-2core.png").stat().st_size > 1000
    assert (tmp_path / "2026-12-06-some-cpu-2core-scaling.png").stat().st_size > 1000
    assert page.machine_name("Intel(R) Xeon(R) Platinum 8480C", 2) == "intel-xeon-2core"


def test_flop_check_names_a_disagreement():
    rows = [dict(label="u", task="forward", flops=10, profiler_flops=10),
            dict(label="u", task="train_step", flops=30, profiler_flops=28)]
    assert "DISAGREE" in report.flop_check(rows) and "u train_step: spec 30, profiler 28" in report.flop_check(rows)
    assert "on all 1 case/task pairs" in report.flop_check(rows[:1])
    grouped = [dict(label="m", task="train_step", flops=30, profiler_flops=90, profiler_flops_grouped=30)]
    assert "equal torch.utils.flop_counter's count on all 1 case/task pairs (torch 2.13's counter" in \
        report.flop_check(grouped) and "m train_step (3.0x the spec's)" in report.flop_check(grouped)


def test_suite_times_sums_each_file():
    from benchmarks.suite_times import per_file

    output = ("12.34s call     tests/test_train_learns.py::test_unet[torch]\n"
              "0.50s setup    tests/test_cli.py::test_report\n1.00s call     tests/test_cli.py::test_report\n"
              "(3 durations < 0.005s hidden.  Use -vv to show these durations.)\n")
    assert per_file(output) == {"tests/test_train_learns.py": 12.34, "tests/test_cli.py": 1.5}


@pytest.mark.slow
def test_quick_scaling_run_writes_rows_exponents_and_plots(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--scaling", "--json", str(tmp_path / "s.json"),
                           "--png", str(tmp_path / "s.png"), "--threads", "2"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((tmp_path / "s.json").read_text())
    rows = document["rows"]
    points = len(cases.QUICK_SCALING.cases())  # 2 sizes + 1 more batch
    sizes = len(cases.QUICK_SCALING.sizes)
    assert len(rows) == 2 * (points + sizes) and document["threads"] == 2  # both sweeps at 2 threads, sizes at 1
    assert all(r["error"] is None and r["median_s"] > 0 and scaling.added_mib(r) is not None for r in rows)
    assert {r["threads_requested"] for r in rows} == {1, 2}
    assert "| network | framework | sweep | points | time exponent | memory exponent |" in done.stdout
    assert "2 threads against 1 (the size sweep):" in done.stdout
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_a_case_rerun_replaces_only_its_own_rows():
    def row(label, task, ms, mode="m"):
        return dict(label=label, task=task, framework="torch", layers="parity", mode=mode, precision="fp32",
                    median_s=ms)
    first = dict(header="first", rows=[row("gemm", "gemm", 1.0, "gemm"), row("a", "forward", 2.0), row("b", "train_step", None)])
    rerun = dict(header="rerun", rows=[row("gemm", "gemm", 9.0, "gemm"), row("b", "train_step", 3.0)])
    for r in (*first["rows"], *rerun["rows"]):
        r["error"], r["flops"] = None, int(4e9)
    out = page.merged([first, rerun])
    assert [(r["label"], r["median_s"]) for r in out["rows"]] == [("gemm", 1.0), ("a", 2.0), ("b", 3.0)]
    assert out["reruns"] == ["rerun"] and out["header"] == "first"
    rates = {r["label"]: r["fraction_of_gemm_peak"] for r in report.with_rates(out["rows"]) if r["task"] != "gemm"}
    assert rates == pytest.approx({"a": 0.5, "b": 9.0 / 3.0})  # each row against its own run's GEMM (4 and 4/9 GFLOP/s)
    again = page.merged([out, dict(rerun, header="rerun 2")])  # the merged page's JSON merged with a later re-run
    assert again["reruns"] == ["rerun", "rerun 2"]


def test_precision_and_task_filters_keep_their_gemms():
    todo = [dict(task=task, precision=p) for p in ("fp32", "bf16") for task in ("gemm", "forward", "train_step")]
    kept = only_precisions_and_tasks(todo, ["bf16"], ["train_step"])
    assert kept == [dict(task="gemm", precision="bf16"), dict(task="train_step", precision="bf16")]
    assert only_precisions_and_tasks(todo, None, None) == todo


def test_a_precision_this_device_does_not_time_is_a_clear_error():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--precision", "fp16"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "--precision ['fp16']" in done.stderr and "nothing to time on cpu" in done.stderr


def test_floor_times_the_u_net_with_each_batch_norm_and_without_between_two_gemms():
    from benchmarks import floor

    case = next(c for c in cases.FULL if c.arch == "unet")
    todo = floor.requests(case, threads=2, warmup=1, repeats=3)
    for fw in ("torch", "tf"):
        mine = [r for r in todo if r["framework"] == fw]
        assert [r["task"] for r in mine] == ["gemm", "train_step", "train_step", "train_step", "gemm"]
        steps = [cases.Case(**r["case"]) for r in mine[1:4]]
        assert [(c.layers, c.options["batch_norm"]) for c in steps] == [("parity", True), ("stock", True),
                                                                        ("stock", False)]
        assert {c.flops("train_step") for c in steps} == {case.flops("train_step")}  # BN adds no counted FLOPs
    rows = [dict(r, median_s=0.1 if r["task"] == "gemm" else 0.2, iqr_s=0.0, error=None,
                 flops=2 * 2048 ** 3 if r["task"] == "gemm" else cases.Case(**r["case"]).flops("train_step"))
            for r in todo]
    rows[-1] = dict(rows[-1], median_s=0.05)  # the last GEMM (tf's, after) is the faster: the peak
    text = floor.markdown(rows, "header")
    assert "torch 171.8 / 171.8 GFLOP/s; tf 171.8 / 343.6 GFLOP/s" in text
    rate = case.flops("train_step") / 0.2 / 1e9
    assert f"| tf | function | no BatchNorm | 200.0 | 0.0 | {rate:.1f} | {rate / 343.6:.0%} |" in text
    assert f"| torch | channels_last | parity BatchNorm | 200.0 | 0.0 | {rate:.1f} | {rate / 171.8:.0%} |" in text
