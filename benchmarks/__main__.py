"""``python -m benchmarks [--quick] [--json PATH] [--markdown PATH] [--png PATH] [--device cpu|cuda]
[--framework both|torch|tf] [--threads N] [--case LABEL ...] [--precision fp32|bf16|fp16 ...] [--task TASK ...]``

Times every case of ``benchmarks.cases`` in both frameworks, every mode and precision, each measurement in
its own subprocess (``--quick``: one per framework), then prints the Markdown summary (best mode per
framework, case, task and precision and their ratio; achieved GFLOP/s against the framework's own
measured GEMM peak in the same precision, FLOPs counted from the specs)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from benchmarks import cases, report, scaling
from segparity.atomic import atomic_write
from segparity.parity.machine import cpu_model


def installed_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_has_native_bf16() -> bool:
    """Whether /proc/cpuinfo lists a native bf16 instruction set (``cases.CPU_BF16_FLAGS``)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in cases.CPU_BF16_FLAGS)


def precisions(device: str) -> tuple[str, ...]:
    """fp32 always, then the device's mixed precisions (on a CPU only with native bf16)."""
    if device == "cpu" and not cpu_has_native_bf16():
        return ("fp32",)
    return ("fp32",) + cases.MIXED_PRECISIONS[device]


def _case_requests(base: dict, case: cases.Case, precision: str, modes: dict, frameworks: tuple[str, ...],
                   count_flops: bool) -> list[dict]:
    """One request per task, framework and mode of ``case`` (``fit`` only for the training step); torch's profiler
    counts the FLOPs of the first (``count_flops``)."""
    out = []
    for task in cases.TASKS:
        for fw in frameworks:
            for mode in modes[fw]:
                if mode == "fit" and task != "train_step":
                    continue
                out.append(dict(base, framework=fw, precision=precision, task=task, mode=mode, label=case.label(),
                                layers=case.layers, case=dataclasses.asdict(case),
                                count_flops=count_flops and fw == "torch" and mode == modes[fw][0]))
    return out


def requests(quick: bool, device: str, threads: int, frameworks: tuple[str, ...]) -> list[dict]:
    """Every measurement of a run: the GEMMs, then each case in both layer flavours (the stock one in the fast
    modes), each precision, and (not ``--quick``) the real-size networks in fp32."""
    warmup, repeats = (2, 5) if quick else (3, 15)
    n = 1024 if quick else 2048
    base = dict(device=device, threads=threads, warmup=warmup, repeats=repeats)
    out = []
    for precision in precisions(device):
        out += [dict(base, framework=fw, precision=precision, task="gemm", mode="gemm", label=f"gemm {n}", n=n)
                for fw in frameworks]
        if quick:
            modes = cases.QUICK_MODES if precision == "fp32" else cases.QUICK_MIXED_MODES
        else:
            modes = cases.MODES if precision == "fp32" else cases.MIXED_MODES
        stock_modes = cases.QUICK_STOCK_MODES if quick else cases.STOCK_MODES
        for case in cases.QUICK if quick else cases.FULL:
            out += _case_requests(base, case, precision, modes, frameworks, count_flops=precision == "fp32")
            stock = {fw: tuple(m for m in stock_modes[fw] if m in modes[fw]) for fw in frameworks}
            out += _case_requests(base, dataclasses.replace(case, layers="stock"), precision, stock, frameworks,
                                  count_flops=False)
    if not quick:
        real = dict(base, warmup=cases.REAL_SIZE_WARMUP, repeats=cases.REAL_SIZE_REPEATS)
        for case in cases.REAL_SIZE:
            for layers in cases.LAYER_FLAVOURS:
                out += _case_requests(real, dataclasses.replace(case, layers=layers), "fp32", cases.REAL_SIZE_MODES,
                                      frameworks, count_flops=layers == "parity")
    return out



_INDUCTOR_CACHE: list[str] = []


def _inductor_cache() -> str:
    """A fresh ``torch.compile`` cache for this run: a stale shared one (``/tmp/torchinductor_<user>``) has
    been seen to fail compiling with "'at::vec' has not been declared"; warm-up still excludes compilation."""
    if not _INDUCTOR_CACHE:
        _INDUCTOR_CACHE.append(tempfile.mkdtemp(prefix="segparity-inductor-"))
    return _INDUCTOR_CACHE[0]


def run_worker(batch: list[dict]) -> list[dict]:
    """Run ``batch`` in one fresh worker process; a request the worker did not answer becomes an error row."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", TORCHINDUCTOR_CACHE_DIR=_inductor_cache())
    done = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(batch)], capture_output=True,
                          text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    rows = [json.loads(line[len("BENCH_ROW "):]) for line in done.stdout.splitlines() if line.startswith("BENCH_ROW ")]
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    for request in batch[len(rows):]:
        rows.append(dict(request, median_s=None, iqr_s=None, peak_rss_mib=0.0, peak_device_mib=None, threads="?",
                         tf32="?", flops=None, error=f"worker failed: {tail[:200]}"))
    return rows


def worker_batches(all_requests: list[dict], shared_process: bool) -> list[list[dict]]:
    """One request per process, or (``shared_process``) one process per framework."""
    if not shared_process:
        return [[r] for r in all_requests]
    frameworks = dict.fromkeys(r["framework"] for r in all_requests)
    return [[dict(r, shared_process=True) for r in all_requests if r["framework"] == fw] for fw in frameworks]


def only_cases(todo: list[dict], wanted: list[str], parser: argparse.ArgumentParser) -> list[dict]:
    """The GEMMs and the requests whose label or architecture is in ``wanted`` (``--case``); a usage error naming
    the known labels when one matches nothing."""
    def matches(request: dict, name: str) -> bool:
        return request["label"] == name or request["case"]["arch"] == name

    timed = [r for r in todo if r["task"] != "gemm"]
    for name in wanted:
        if not any(matches(r, name) for r in timed):
            known = ", ".join(dict.fromkeys(r["label"] for r in timed))
            parser.error(f"--case {name!r}: no such case or architecture; known: {known}")
    return [r for r in todo if r["task"] == "gemm" or any(matches(r, name) for name in wanted)]


def run_scaling(args: argparse.Namespace, parser: argparse.ArgumentParser, header: str, versions: dict,
                frameworks: tuple[str, ...], start: float) -> int:
    """``--scaling``: every point of ``cases.SCALING`` (``--quick``: ``cases.QUICK_SCALING``) in its own process."""
    sweep = cases.QUICK_SCALING if args.quick else cases.SCALING
    todo = scaling.requests(sweep, args.device, args.threads, frameworks)
    if args.case:
        todo = only_cases(todo, args.case, parser)
        header += f" Only the case(s) {', '.join(args.case)}."

    header += (f" Scaling: the training step, fp32, parity layers, each point in its own process "
               f"({cases.SCALING_WARMUP} warm-up call, median of {cases.SCALING_REPEATS}); memory is the peak RSS the "
               f"step added to its process.")
    rows = []
    with tqdm(total=len(todo), desc="scaling", unit="run", file=sys.stderr, disable=None) as bar:
        for request in todo:
            rows += run_worker([request])
            bar.update(1)
    text = header + "\n\n" + scaling.markdown(rows, args.threads)
    print(text)
    print(f"{len(rows)} measurements in {time.perf_counter() - start:.0f} s")
    if args.json:
        payload = json.dumps({"header": header, "versions": versions, "cpu": cpu_model(), "threads": args.threads,
                              "rows": rows}, indent=1)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(payload))
    if args.markdown:
        atomic_write(args.markdown, lambda tmp: Path(tmp).write_text(text))
    if args.png:
        scaling.plot(rows, args.threads, args.png)
    return 1 if any(r["error"] for r in rows) else 0


def only_precisions_and_tasks(todo: list[dict], precisions: list[str] | None, tasks: list[str] | None) -> list[dict]:
    """The requests in one of ``precisions`` (GEMMs included) and, GEMMs apart, of one of ``tasks``; None keeps all."""
    return [r for r in todo if (not precisions or r["precision"] in precisions)
            and (r["task"] == "gemm" or not tasks or r["task"] in tasks)]


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one small U-Net, two modes per framework (one with mixed precision), one process per "
                             "framework (under a minute)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--framework", choices=("both", "torch", "tf"), default="both",
                        help="time one framework only (e.g. a GPU machine without TensorFlow); no ratios then")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads in both frameworks")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--markdown", metavar="PATH")
    parser.add_argument("--png", metavar="PATH")
    parser.add_argument("--case", action="append", metavar="LABEL",
                        help="time only the cases with this label ('unet 1x1x572x572') or architecture ('unet'), "
                             "repeatable; the GEMMs too")
    parser.add_argument("--precision", action="append", choices=("fp32", "bf16", "fp16"),
                        help="time only this precision (repeatable; its GEMMs too), e.g. to re-run failed rows")
    parser.add_argument("--task", action="append", choices=cases.TASKS, help="time only this task (repeatable)")
    parser.add_argument("--scaling", action="store_true",
                        help="time the training step over input sizes and batch sizes instead (benchmarks.scaling; with "
                             "--quick a tiny U-Net); --png draws the two log-log plots")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    start = time.perf_counter()
    versions = {name: installed_version(name) for name in ("torch", "tensorflow", "keras", "numpy")}
    header = (f"segparity benchmarks, {time.strftime('%Y-%m-%d')}: {cpu_model()}, {os.cpu_count()} cores, "
              f"{args.threads} intra-op threads per framework, device {args.device}; python {platform.python_version()}, "
              + ", ".join(f"{k} {v}" for k, v in versions.items())
              + ". Median of repeated runs after warm-up.")
    frameworks = ("torch", "tf") if args.framework == "both" else (args.framework,)
    if args.scaling:
        return run_scaling(args, parser, header, versions, frameworks, start)

    todo = requests(args.quick, args.device, args.threads, frameworks)
    if args.case:
        todo = only_cases(todo, args.case, parser)
        header += f" Only the case(s) {', '.join(args.case)}."
    if args.precision or args.task:
        available = sorted({r["precision"] for r in todo})
        todo = only_precisions_and_tasks(todo, args.precision, args.task)
        if not any(r["task"] != "gemm" for r in todo):
            parser.error(f"--precision {args.precision or 'any'} --task {args.task or 'any'}: nothing to time on "
                         f"{args.device} (precisions here: {', '.join(available)})")
        header += "".join(f" Only the {name}(s) {', '.join(chosen)}." for name, chosen
                          in (("precision", args.precision), ("task", args.task)) if chosen)

    if args.device == "cpu" and not cpu_has_native_bf16():
        header += " No bf16 rows: this CPU has no native bf16 instructions."
    header += (" --quick: each framework's measurements share one process, so peak RSS is cumulative." if args.quick
               else " Each measurement in its own process (peak RSS is its own).")
    gemms, timed = [r for r in todo if r["task"] == "gemm"], [r for r in todo if r["task"] != "gemm"]
    # The GEMMs again after the networks: the peak is the faster of the two (a shared VM's speed drifts in a run).
    gemms_after = [dict(r, label=f"{r['label']}, after the networks") for r in gemms]
    rows = []
    with tqdm(total=len(gemms) + len(timed) + len(gemms_after), desc="benchmarks", unit="run", file=sys.stderr,
              disable=None) as bar:
        for when, part in (("before", gemms), ("networks", timed), ("after", gemms_after)):
            for batch in worker_batches(part, args.quick):
                rows += run_worker(batch)
                bar.update(len(batch))
            failed = [r for r in rows if r["task"] == "gemm" and r["error"]]
            if failed and when == "before":  # no GEMM peak (no device, broken install): nothing after it would mean
                # anything. A GEMM failing after the networks stays a row with its error; the first one is the peak.
                for r in failed:
                    print(f"benchmarks: {r['framework']} {r['precision']} GEMM failed: {r['error']}", file=sys.stderr)
                return 1
    rows = report.with_rates(rows)
    peaks = report.gemm_peaks(rows)
    measured = report.gemm_rates(rows)
    header += (" GEMM peak (the faster of the GEMM before and after the networks): "
               + ", ".join(f"{fw} {p} {gf:.1f} GFLOP/s ({' then '.join(f'{v:.1f}' for v in measured[fw, p])})"
                           for (fw, p), gf in peaks.items()) + ".")
    header += " " + report.flop_check(rows)
    devices = "; ".join(dict.fromkeys(f"{r['framework']} on {r['device_name']}" for r in rows if r.get("device_name")))
    tf32 = "; ".join(dict.fromkeys(r["tf32"] for r in rows if r["task"] == "gemm" and r.get("tf32")))
    header += (f" Devices: {devices}. TF32 left at the frameworks' defaults (speed mode, unlike the parity report,"
               f" which switches it off; it only acts on NVIDIA GPUs): {tf32}.")
    text = report.markdown(rows, header)
    print(text)
    print(f"{len(rows)} measurements in {time.perf_counter() - start:.0f} s")
    if args.json:
        payload = json.dumps({"header": header, "versions": versions, "cpu": cpu_model(), "rows": rows}, indent=1)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(payload))
    if args.markdown:
        atomic_write(args.markdown, lambda tmp: Path(tmp).write_text(text))
    if args.png:
        report.bar_chart(rows, args.png, "torch (blue) vs tf (orange), median time")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for folder in _INDUCTOR_CACHE:
            shutil.rmtree(folder, ignore_errors=True)
