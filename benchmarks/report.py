"""Turning measurement rows into the summary: best mode per framework, ratio, achieved GFLOP/s and the
fraction of the framework's own GEMM peak; Markdown table and PNG bar chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segparity.atomic import atomic_write


def gemm_rates(rows: list[dict]) -> dict[tuple[str, str], list[float]]:
    """(framework, precision) -> every GEMM GFLOP/s measured in the run, in run order (before the networks and
    again after them)."""
    rates: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["task"] == "gemm" and r["error"] is None:
            rates.setdefault((r["framework"], r["precision"]), []).append(r["flops"] / r["median_s"] / 1e9)
    return rates


def gemm_peaks(rows: list[dict]) -> dict[tuple[str, str], float]:
    """(framework, precision) -> the run's GEMM peak: the fastest of its GEMM measurements, so that a slow moment
    of a shared machine while the GEMM ran cannot make the networks' fractions of peak look better."""
    return {key: max(values) for key, values in gemm_rates(rows).items()}


def with_rates(rows: list[dict]) -> list[dict]:
    """Rows with ``gflops`` (from the spec's FLOP count) and ``fraction_of_gemm_peak`` (of the same
    framework's GEMM in the same precision and run: a row's own ``gemm_peak_gflops`` where a re-run merged by
    ``benchmarks.page`` set it) filled in."""
    peaks = gemm_peaks(rows)
    out = []
    for r in rows:
        r = dict(r)
        ok = r["error"] is None and r.get("flops")
        r["gflops"] = r["flops"] / r["median_s"] / 1e9 if ok else None
        peak = r.get("gemm_peak_gflops") or peaks.get((r["framework"], r["precision"]))
        r["fraction_of_gemm_peak"] = r["gflops"] / peak if ok and peak else None
        out.append(r)
    return out


def _profiler_count(row: dict) -> int:
    """torch's count with grouped convolutions' weight gradients divided by their groups (``profiler_flops_grouped``;
    rows without it: torch's count as it is)."""
    return row.get("profiler_flops_grouped", row["profiler_flops"])


def flop_check(rows: list[dict]) -> str:
    """One sentence: do the FLOPs counted from the specs equal torch's profiler on every checked case?"""
    checked = [r for r in rows if r.get("profiler_flops") is not None]
    wrong = [f"{r['label']} {r['task']}: spec {r['flops']}, profiler {_profiler_count(r)}"
             for r in checked if _profiler_count(r) != r["flops"]]
    grouped = [f"{r['label']} {r['task']} ({r['profiler_flops'] / r['flops']:.1f}x the spec's)" for r in checked
               if r["profiler_flops"] != _profiler_count(r)]
    if not checked:
        return "FLOPs counted from the specs (segparity.networks.flops); not checked against a profiler in this run."
    if wrong:
        return "FLOPs counted from the specs DISAGREE with torch.utils.flop_counter: " + "; ".join(wrong) + "."
    note = ("" if not grouped else " (torch 2.13's counter counts a grouped convolution's weight gradient as an "
            "ungrouped one's, groups times too many; with that term divided by the groups, as pytorch/pytorch#183405 "
            "proposes, it equals the spec's count; torch's own count: " + "; ".join(grouped) + ")")
    return (f"FLOPs counted from the specs (segparity.networks.flops) equal torch.utils.flop_counter's count on all "
            f"{len(checked)} case/task pairs{note}.")



def _fastest(rows: list[dict]) -> dict | None:
    done = [r for r in rows if r["error"] is None]
    return min(done, key=lambda r: r["median_s"]) if done else None


def best_modes(rows: list[dict]) -> list[dict]:
    """Per (case, task, precision): each framework's fastest mode and flavour (``torch``, ``tf``), its fastest mode in
    each flavour (``torch parity``, ``tf stock``, ...), and slower / faster of the two bests."""
    summary = []
    order = ("fp32", "bf16", "fp16")
    keys = sorted({(r["label"], r["task"], r["precision"]) for r in rows if r["task"] != "gemm"},
                  key=lambda key: (key[0], key[1], order.index(key[2])))
    for label, task, precision in keys:
        part = [r for r in rows if (r["label"], r["task"], r["precision"]) == (label, task, precision)]
        entry = {"label": label, "task": task, "precision": precision}
        for fw in ("torch", "tf"):
            entry[fw] = _fastest([r for r in part if r["framework"] == fw])
            for layers in ("parity", "stock"):
                entry[f"{fw} {layers}"] = _fastest([r for r in part if r["framework"] == fw
                                                    and r.get("layers", "parity") == layers])
        if entry["torch"] and entry["tf"]:
            fast, slow = sorted((entry["torch"], entry["tf"]), key=lambda r: r["median_s"])
            entry.update(slower=slow["framework"], ratio=slow["median_s"] / fast["median_s"])
            summary.append(entry)
    return summary


def _best(row: dict | None, flavour: bool = True) -> str:
    if row is None:
        return "—"
    frac = f", {row['fraction_of_gemm_peak']:.0%}" if row.get("fraction_of_gemm_peak") else ""
    layers = f" {row.get('layers', 'parity')}" if flavour else ""
    return f"{row['mode']}{layers} {row['median_s'] * 1e3:.1f} ms{frac}"


def _mib(value) -> str:
    return f"{value:.0f}" if value is not None else "—"


def measurement_table(rows: list[dict]) -> list[str]:
    """Every measurement but the GEMMs, one Markdown row each."""
    lines = ["| case | task | precision | framework | layers | mode | median ms | IQR ms | GFLOP/s | of GEMM peak | "
             "peak RSS MiB | device peak MiB | note |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["task"] == "gemm":
            continue
        ms = f"{r['median_s'] * 1e3:.1f}" if r["median_s"] else "—"
        iqr = f"{r['iqr_s'] * 1e3:.1f}" if r["iqr_s"] is not None else "—"
        rate = f"{r['gflops']:.1f}" if r.get("gflops") else "—"
        frac = f"{r['fraction_of_gemm_peak']:.0%}" if r.get("fraction_of_gemm_peak") else "—"
        lines.append(f"| {r['label']} | {r['task']} | {r['precision']} | {r['framework']} | {r.get('layers', 'parity')} | "
                     f"{r['mode']} | {ms} | {iqr} | {rate} | {frac} | {r['peak_rss_mib']:.0f} | "
                     f"{_mib(r.get('peak_device_mib'))} | {r['error'] or ''} |")
    return lines


def best_table(rows: list[dict]) -> list[str]:
    """``best_modes`` as Markdown: each framework's best mode and flavour, the ratio, then its best in each flavour."""
    lines = ["| case | task | precision | torch best | tf best | slower | ratio | torch parity | torch stock | "
             "tf parity | tf stock |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in best_modes(rows):
        lines.append(f"| {s['label']} | {s['task']} | {s['precision']} | {_best(s['torch'])} | {_best(s['tf'])} | "
                     f"{s['slower']} | {s['ratio']:.2f}x | "
                     + " | ".join(_best(s[f"{fw} {layers}"], flavour=False) for fw in ("torch", "tf")
                                  for layers in ("parity", "stock")) + " |")
    return lines


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", *measurement_table(rows), "",
             "Best mode and layer flavour per framework (precisions are never mixed; the percentage is of the same "
             "framework's GEMM in the same precision), then each framework's best mode in each flavour:", "",
             *best_table(rows)]
    return "\n".join(lines) + "\n"


def bar_chart(rows: list[dict], path: str | Path, title: str) -> Path:
    """Median time per (case, task, mode), torch and tf side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r["task"] != "gemm" and r["error"] is None]
    groups = sorted({(r["label"], r["task"]) for r in timed})
    bars = [sum(1 for r in timed if (r["label"], r["task"]) == g) for g in groups]
    figure, axes = plt.subplots(len(groups), 1, figsize=(9, sum(0.3 * n + 1.2 for n in bars)), squeeze=False,
                                gridspec_kw={"height_ratios": [0.3 * n + 1.2 for n in bars]})
    for ax, (label, task) in zip(axes[:, 0], groups):
        part = [r for r in timed if r["label"] == label and r["task"] == task]
        names = [f"{r['framework']} {r['mode']}" + ("" if r.get("layers", "parity") == "parity" else " stock")
                 + ("" if r["precision"] == "fp32" else f" {r['precision']}") for r in part]
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
