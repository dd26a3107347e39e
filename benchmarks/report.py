"""Turning measurement rows into the summary: best mode per framework, ratio, achieved GFLOP/s and the
fraction of the framework's own GEMM peak; Markdown table and PNG bar chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.atomic import atomic_write


def gemm_peaks(rows: list[dict]) -> dict[str, float]:
    """Framework -> measured fp32 GEMM GFLOP/s."""
    return {r["framework"]: r["flops"] / r["median_s"] / 1e9 for r in rows if r["task"] == "gemm" and r["error"] is None}


def with_rates(rows: list[dict]) -> list[dict]:
    """Rows with ``flops`` filled in from torch's count for the same case and task, ``gflops`` and
    ``fraction_of_gemm_peak``."""
    counts = {(r["label"], r["task"]): r["flops"] for r in rows if r.get("flops") and r["task"] != "gemm"}
    peaks = gemm_peaks(rows)
    out = []
    for r in rows:
        r = dict(r)
        if r["task"] != "gemm":
            r["flops"] = counts.get((r["label"], r["task"]))
        ok = r["error"] is None and r.get("flops")
        r["gflops"] = r["flops"] / r["median_s"] / 1e9 if ok else None
        r["fraction_of_gemm_peak"] = r["gflops"] / peaks[r["framework"]] if ok and r["framework"] in peaks else None
        out.append(r)
    return out


def best_modes(rows: list[dict]) -> list[dict]:
    """Per (case, task): each framework's fastest mode, and slower / faster."""
    summary = []
    keys = sorted({(r["label"], r["task"]) for r in rows if r["task"] != "gemm"})
    for label, task in keys:
        best = {}
        for fw in ("torch", "tf"):
            done = [r for r in rows if r["label"] == label and r["task"] == task and r["framework"] == fw and r["error"] is None]
            if done:
                best[fw] = min(done, key=lambda r: r["median_s"])
        if len(best) == 2:
            fast, slow = sorted(best.values(), key=lambda r: r["median_s"])
            summary.append({"label": label, "task": task, "torch": best["torch"], "tf": best["tf"],
                            "slower": slow["framework"], "ratio": slow["median_s"] / fast["median_s"]})
    return summary


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| case | task | framework | mode | median ms | IQR ms | GFLOP/s | of GEMM peak | peak RSS MiB | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["task"] == "gemm":
            continue
        ms = f"{r['median_s'] * 1e3:.1f}" if r["median_s"] else "—"
        iqr = f"{r['iqr_s'] * 1e3:.1f}" if r["iqr_s"] is not None else "—"
        rate = f"{r['gflops']:.1f}" if r.get("gflops") else "—"
        frac = f"{r['fraction_of_gemm_peak']:.0%}" if r.get("fraction_of_gemm_peak") else "—"
        lines.append(f"| {r['label']} | {r['task']} | {r['framework']} | {r['mode']} | {ms} | {iqr} | {rate} | {frac} | "
                     f"{r['peak_rss_mib']:.0f} | {r['error'] or ''} |")
    lines += ["", "| case | task | torch best | tf best | slower | ratio |", "|---|---|---|---|---|---|"]
    for s in best_modes(rows):
        lines.append(f"| {s['label']} | {s['task']} | {s['torch']['mode']} {s['torch']['median_s'] * 1e3:.1f} ms | "
                     f"{s['tf']['mode']} {s['tf']['median_s'] * 1e3:.1f} ms | {s['slower']} | {s['ratio']:.2f}x |")
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict], path: str | Path, title: str) -> Path:
    """Median time per (case, task, mode), torch and tf side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r["task"] != "gemm" and r["error"] is None]
    groups = sorted({(r["label"], r["task"]) for r in timed})
    figure, axes = plt.subplots(len(groups), 1, figsize=(9, 2.6 * len(groups)), squeeze=False)
    for ax, (label, task) in zip(axes[:, 0], groups):
        part = [r for r in timed if r["label"] == label and r["task"] == task]
        names = [f"{r['framework']} {r['mode']}" for r in part]
        colours = ["C0" if r["framework"] == "torch" else "C1" for r in part]
        ax.barh(np.arange(len(part)), [r["median_s"] * 1e3 for r in part], xerr=[r["iqr_s"] * 1e3 for r in part],
                color=colours)
        ax.set_yticks(np.arange(len(part)), names)
        ax.set(xlabel="median ms (IQR bars)", title=f"{label}: {task}")
    figure.suptitle(title)
    figure.tight_layout()
    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(figure)
