"""``python -m benchmarks [--quick] [--json PATH] [--markdown PATH] [--png PATH] [--device cpu|cuda] [--threads N]``

Times every case of ``benchmarks.cases`` in both frameworks and every mode, each measurement in its own
subprocess, then prints the Markdown summary (best mode per framework and their ratio, achieved GFLOP/s
against the framework's own measured fp32 GEMM peak).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from benchmarks import cases, report
from shared.atomic import atomic_write


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def requests(quick: bool, device: str, threads: int) -> list[dict]:
    warmup, repeats = (2, 5) if quick else (3, 15)
    base = dict(device=device, threads=threads, warmup=warmup, repeats=repeats)
    out = [dict(base, framework=fw, task="gemm", mode="gemm", label=f"gemm {1024 if quick else 2048}",
                n=1024 if quick else 2048) for fw in ("torch", "tf")]
    modes = cases.QUICK_MODES if quick else cases.MODES
    for case in cases.QUICK if quick else cases.FULL:
        for task in cases.TASKS:
            for fw in ("torch", "tf"):
                for mode in modes[fw]:
                    if mode == "fit" and task != "train_step":
                        continue
                    out.append(dict(base, framework=fw, task=task, mode=mode, label=case.label(),
                                    case=dataclasses.asdict(case), count_flops=fw == "torch" and mode == modes["torch"][0]))
    return out


def run_one(request: dict) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    done = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(request)], capture_output=True,
                          text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_ROW "):
            return json.loads(line[len("BENCH_ROW "):])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return dict(request, median_s=None, iqr_s=None, peak_rss_mib=0.0, threads="?", error=f"worker failed: {tail[:200]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small U-Net, two modes per framework (under a minute)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads in both frameworks")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--markdown", metavar="PATH")
    parser.add_argument("--png", metavar="PATH")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    versions = {name: metadata.version(name) for name in ("torch", "tensorflow", "keras", "numpy")}
    header = (f"segparity benchmarks, {time.strftime('%Y-%m-%d')}: {cpu_model()}, {os.cpu_count()} cores, "
              f"{args.threads} intra-op threads per framework, device {args.device}; python {platform.python_version()}, "
              + ", ".join(f"{k} {v}" for k, v in versions.items())
              + ". Median of repeated runs after warm-up; each measurement in its own process (peak RSS is its own).")
    rows = [run_one(r) for r in tqdm(requests(args.quick, args.device, args.threads), desc="benchmarks", unit="run",
                                      file=sys.stderr, disable=None)]
    rows = report.with_rates(rows)
    peaks = report.gemm_peaks(rows)
    header += " fp32 GEMM peak: " + ", ".join(f"{fw} {gf:.1f} GFLOP/s" for fw, gf in peaks.items()) + "."
    tf32 = "; ".join(r["tf32"] for r in rows if r["task"] == "gemm" and r.get("tf32"))
    header += f" TF32 left at the frameworks' defaults (speed mode; it only acts on GPUs): {tf32}."
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
    failed = [r for r in rows if r["error"] and r["task"] == "gemm"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
