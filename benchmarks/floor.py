"""How close each framework's convolutions come to its GEMM peak: the U-Net case's fp32 training step with
segparity's BatchNorm, with the framework's own, and with no BatchNorm at all (``batch_norm=False``: the same
convolutions, the same FLOPs counted from the spec), side by side with the GEMM, measured before and after.

``python -m benchmarks.floor [--threads N] [--repeats R] [--markdown PATH]``

No BatchNorm at all is the most any BatchNorm can be made to cost: where that network stays under the
issue's 80 % of the GEMM peak, the rest of the distance is the framework's convolution, ReLU, pooling and
concatenation kernels, not segparity's layers. Each measurement runs in its own process, as in
``python -m benchmarks``; torch in ``channels_last`` eager mode, Keras in ``tf.function``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from benchmarks import cases, report
from benchmarks.__main__ import run_worker
from segparity.atomic import atomic_write
from segparity.parity.machine import cpu_model

MODES = {"torch": "channels_last", "tf": "function"}
VARIANTS = (("parity BatchNorm", "parity", True), ("framework's BatchNorm", "stock", True),
            ("no BatchNorm", "stock", False))


def requests(case: cases.Case, threads: int, warmup: int, repeats: int) -> list[dict]:
    """Per framework: its fp32 GEMM, the case's training step in each of ``VARIANTS``, the GEMM again."""
    base = dict(device="cpu", threads=threads, warmup=warmup, repeats=repeats, precision="fp32")
    out = []
    for fw, mode in MODES.items():
        gemm = dict(base, framework=fw, task="gemm", mode="gemm", label="gemm 2048", n=2048)
        out.append(gemm)
        for name, layers, batch_norm in VARIANTS:
            variant = dataclasses.replace(case, layers=layers, options=dict(case.options, batch_norm=batch_norm))
            out.append(dict(base, framework=fw, task="train_step", mode=mode, label=case.label(), layers=layers,
                            variant=name, case=dataclasses.asdict(variant)))
        out.append(dict(gemm, label="gemm 2048, after the networks"))
    return out


def markdown(rows: list[dict], header: str) -> str:
    """One line per training step: median, GFLOP/s and the fraction of its framework's GEMM peak."""
    rows = report.with_rates(rows)
    measured = report.gemm_rates(rows)
    lines = [header, "", "GEMM 2048 fp32 (before, after; the peak is the faster): " + "; ".join(
        f"{fw} {' / '.join(f'{v:.1f}' for v in values)} GFLOP/s" for (fw, _), values in measured.items()), "",
        "| framework | mode | U-Net step | median ms | IQR ms | GFLOP/s | of GEMM peak |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["task"] == "gemm":
            continue
        if r["error"]:
            lines.append(f"| {r['framework']} | {r['mode']} | {r['variant']} | — | — | — | {r['error']} |")
            continue
        fraction = r["fraction_of_gemm_peak"]  # None when the GEMM failed
        lines.append(f"| {r['framework']} | {r['mode']} | {r['variant']} | {r['median_s'] * 1e3:.1f} | "
                     f"{r['iqr_s'] * 1e3:.1f} | {r['gflops']:.1f} | {'—' if fraction is None else f'{fraction:.0%}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("--threads and --repeats must be at least 1, --warmup at least 0")
    case = next(c for c in cases.FULL if c.arch == "unet")
    rows = [row for request in requests(case, args.threads, args.warmup, args.repeats)
            for row in run_worker([request])]
    header = (f"U-Net ({case.label()}) fp32 training step with and without BatchNorm, {cpu_model()}, "
              f"{args.threads} intra-op threads per framework; median of {args.repeats} after {args.warmup} warm-up "
              f"calls, each measurement in its own process (python -m benchmarks.floor).")
    text = markdown(rows, header)
    print(text)
    if args.markdown:
        atomic_write(args.markdown, lambda tmp: Path(tmp).write_text(text))
    return 0 if all(r["error"] is None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
