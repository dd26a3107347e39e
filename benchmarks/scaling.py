"""How a training step's time and memory grow with the work: ``python -m benchmarks --scaling``.

The U-Net (64 channels, depth 4, ``"same"`` padding) and torchvision's ``deeplabv3_resnet50`` (``cases.SCALING``),
fp32, segparity's parity layers, each framework's best mode (``cases.SCALING_MODES``), each point in its own worker
process: input sizes 64..512 at batch 1 (the size sweep; DeepLabV3 at batch 2, ``cases.SCALING``) and batches 1..16 at
128x128 (the batch sweep), at the run's
``--threads``; the size sweep again at 1 thread. For each network, framework and sweep, the exponent ``b`` of
``time = a * pixels**b`` is the least-squares slope in log-log (1: linear in the pixels per batch); memory is the
peak RSS the step added to the process (peak minus the RSS before anything was built).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from benchmarks import cases
from segparity.atomic import atomic_write


def requests(sweep: cases.Sweep, device: str, threads: int, frameworks: tuple[str, ...]) -> list[dict]:
    """Every point of both sweeps at ``threads``, then the size sweep at 1 thread (when ``threads`` > 1)."""
    base = dict(device=device, precision="fp32", task="train_step", warmup=cases.SCALING_WARMUP,
                repeats=cases.SCALING_REPEATS, layers="parity", sweep=dataclasses.asdict(sweep))
    out = []
    for thread_count in dict.fromkeys((threads, 1)):
        for case in sweep.cases():
            if thread_count != threads and case.batch != sweep.batch_of_size_sweep(case.arch):
                continue  # 1 thread: the size sweep only
            for fw in frameworks:
                out.append(dict(base, framework=fw, threads=thread_count, threads_requested=thread_count,
                                mode=cases.SCALING_MODES[fw],
                                label=case.label(), case=dataclasses.asdict(case), pixels=case.pixels()))
    return out


def in_size_sweep(row: dict) -> bool:
    """Whether a point is at its network's size-sweep batch (1, or ``Sweep.size_batch``)."""
    return row["case"]["batch"] == row["sweep"].get("size_batch", {}).get(row["case"]["arch"], 1)


def sweeps(row: dict) -> list[str]:
    """The sweeps a point belongs to: "size" (the size-sweep batch), "batch" (the batch sweep's image size), or both."""
    batch_sweep = row["case"]["size"] == row["sweep"]["batch_size"]
    return (["size"] if in_size_sweep(row) else []) + (["batch"] if batch_sweep else [])


def added_mib(row: dict) -> float | None:
    """Peak RSS the measurement added to its process, MiB."""
    if row["error"] is not None or row.get("baseline_rss_mib") is None:
        return None
    return max(row["peak_rss_mib"] - row["baseline_rss_mib"], 0.0)


def fit_exponent(pixels: list[float], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(pixels); None with fewer than two points."""
    points = [(math.log(p), math.log(v)) for p, v in zip(pixels, values) if v and v > 0]
    if len(points) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def series(rows: list[dict], threads: int) -> dict[tuple[str, str, str], list[dict]]:
    """(network, framework, sweep) -> its points at ``threads``, by pixels per batch."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        if r["threads_requested"] != threads or r["error"] is not None:
            continue
        for sweep in sweeps(r):
            out.setdefault((r["case"]["arch"], r["framework"], sweep), []).append(r)
    return {key: sorted(points, key=lambda r: r["pixels"]) for key, points in sorted(out.items())}


def exponents(rows: list[dict], threads: int) -> list[dict]:
    """Per network, framework and sweep: the fitted exponents of time and of memory against pixels per batch."""
    out = []
    for (arch, fw, sweep), points in series(rows, threads).items():
        pixels = [r["pixels"] for r in points]
        out.append(dict(arch=arch, framework=fw, sweep=sweep, points=len(points),
                        time_exponent=fit_exponent(pixels, [r["median_s"] for r in points]),
                        memory_exponent=fit_exponent(pixels, [added_mib(r) for r in points])))
    return out


def speedups(rows: list[dict], threads: int) -> list[dict]:
    """The size sweep at ``threads`` against 1 thread: time at 1 thread / time at ``threads``, per point."""
    single = {(r["case"]["arch"], r["framework"], r["case"]["size"]): r for r in rows
              if r["threads_requested"] == 1 and in_size_sweep(r) and r["error"] is None}
    out = []
    for r in rows:
        key = (r["case"]["arch"], r["framework"], r["case"]["size"])
        if r["threads_requested"] == threads != 1 and in_size_sweep(r) and r["error"] is None and key in single:
            out.append(dict(arch=key[0], framework=key[1], size=key[2], one_thread_s=single[key]["median_s"],
                            threads_s=r["median_s"], speedup=single[key]["median_s"] / r["median_s"]))
    return sorted(out, key=lambda s: (s["arch"], s["framework"], s["size"]))


def _exponent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown(rows: list[dict], threads: int) -> str:
    """The points, the fitted exponents and the thread speed-ups, as Markdown tables."""
    lines = ["| network | input | threads | framework | mode | median ms | IQR ms | GFLOP/s | memory added MiB | "
             "peak RSS MiB | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["case"]["arch"], -r["threads_requested"], r["pixels"], r["framework"])):
        ok = r["error"] is None
        ms = f"{r['median_s'] * 1e3:.1f}" if ok else "—"
        iqr = f"{r['iqr_s'] * 1e3:.1f}" if ok else "—"
        rate = f"{r['flops'] / r['median_s'] / 1e9:.1f}" if ok else "—"
        added = added_mib(r)
        lines.append(f"| {r['case']['arch']} | {r['label'].split(' ', 1)[1]} | {r['threads_requested']} | "
                     f"{r['framework']} | {r['mode']} | {ms} | {iqr} | {rate} | "
                     f"{'—' if added is None else f'{added:.0f}'} | {r['peak_rss_mib']:.0f} | {r['error'] or ''} |")
    lines += ["", f"Fitted exponents at {threads} threads (time or memory = a * pixels_per_batch ** exponent):", "",
              "| network | framework | sweep | points | time exponent | memory exponent |", "|---|---|---|---|---|---|"]
    for e in exponents(rows, threads):
        lines.append(f"| {e['arch']} | {e['framework']} | {e['sweep']} | {e['points']} | {_exponent(e['time_exponent'])} | "
                     f"{_exponent(e['memory_exponent'])} |")
    table = speedups(rows, threads)
    if table:
        lines += ["", f"{threads} threads against 1 (the size sweep):", "",
                  "| network | framework | size | 1 thread ms | " + f"{threads} threads ms | speed-up |",
                  "|---|---|---|---|---|---|"]
        for s in table:
            lines.append(f"| {s['arch']} | {s['framework']} | {s['size']} | {s['one_thread_s'] * 1e3:.1f} | "
                         f"{s['threads_s'] * 1e3:.1f} | {s['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], threads: int, path: str | Path) -> Path:
    """Two log-log panels, time and memory added against pixels per batch: one line per network, framework and
    sweep (torch blue, Keras orange; the size sweep solid, the batch sweep dashed), the fitted exponent in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = {(e["arch"], e["framework"], e["sweep"]): e for e in exponents(rows, threads)}
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    markers = {arch: marker for arch, marker in zip(dict.fromkeys(r["case"]["arch"] for r in rows), "os^v")}
    for (arch, fw, sweep), points in series(rows, threads).items():
        pixels = [r["pixels"] for r in points]
        style = dict(color="C0" if fw == "torch" else "C1", linestyle="-" if sweep == "size" else "--",
                     marker=markers.get(arch, "x"))
        fit = fits[arch, fw, sweep]
        axes[0].plot(pixels, [r["median_s"] * 1e3 for r in points], **style,
                     label=f"{arch} {fw} {sweep} sweep: b = {_exponent(fit['time_exponent'])}")
        memory = [(p, added_mib(r)) for p, r in zip(pixels, points) if added_mib(r)]
        if memory:
            axes[1].plot(*zip(*memory), **style, label=f"{arch} {fw} {sweep} sweep: b = {_exponent(fit['memory_exponent'])}")
    for ax, ylabel in zip(axes, ("median training step, ms", "peak RSS added by the step, MiB")):
        ax.set(xscale="log", yscale="log", xlabel="pixels per batch (batch x H x W)", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    figure.suptitle(f"Training step cost against pixels per batch (fp32, {threads} threads; fitted value ~ pixels^b)")
    figure.tight_layout()
    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(figure)
