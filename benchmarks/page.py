"""The results page: ``python -m benchmarks.page --full FULL.json --scaling SCALING.json [--profile PATH ...]
--out benchmarks/results/<date>-<machine>.md``.

Reads the JSON of a full run (``python -m benchmarks --json``) and of a scaling run (``python -m benchmarks
--scaling --json``), each possibly followed by ``--case`` re-runs whose rows replace the first's, writes the merged
rows beside the page (``<page>.json``, ``<page>-scaling.json``), draws their charts there (``<page>.png``,
``<page>-scaling.png``) and writes one

Markdown page: the machine (CPU model, cores, threads, versions), the targets of issue 27 as measured, each
framework's best mode and layer flavour per case, what segparity's exact layers cost, the real-size networks (FLOPs
from the spec and from ``torch.utils.flop_counter``, peak memory), how cost grows, the per-op profiles given with
``--profile``, and every measurement.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from benchmarks import cases, report, scaling
from segparity.atomic import atomic_write

GAP = 1.15  # a best-mode ratio above this gets a per-op profile and a README sentence
TARGET = 0.80  # U-Net training step: fraction of the framework's own fp32 GEMM peak


def machine_name(cpu: str, cores: int) -> str:
    """``amd-epyc-2core`` from the CPU model and core count: the results file's name."""
    words = re.sub(r"\(R\)|\(TM\)|CPU|Processor|@.*$|\d+-Core", " ", cpu).split()[:2]
    return "-".join(w.lower() for w in words if re.fullmatch(r"[A-Za-z0-9]+", w)) + f"-{cores}core"


def _ms(row: dict | None) -> str:
    return "—" if row is None else f"{row['median_s'] * 1e3:.1f}"


def _rate(row: dict) -> str:
    return "—" if not row.get("gflops") else f"{row['gflops']:.1f}"


def _pct(row: dict | None) -> str:
    return "—" if row is None or not row.get("fraction_of_gemm_peak") else f"{row['fraction_of_gemm_peak']:.0%}"


def real_size_labels() -> set[str]:
    return {case.label() for case in cases.REAL_SIZE}


def targets(rows: list[dict], profiles: list[str]) -> list[str]:
    """The issue's targets as this run measured them, one bullet each."""
    unet = cases.FULL[0].label()
    best = {(s["label"], s["task"], s["precision"]): s for s in report.best_modes(rows)}
    lines = []
    step = best.get((unet, "train_step", "fp32"))
    if step:
        verdicts = []
        for fw in ("torch", "tf"):
            row = step[fw]
            met = (row.get("fraction_of_gemm_peak") or 0) >= TARGET
            verdicts.append(f"{fw} {row['mode']} {row.get('layers', 'parity')} {_pct(row)} ({'met' if met else 'NOT met'})")
        lines.append(f"- U-Net ({unet}) training step at >= {TARGET:.0%} of the framework's own fp32 GEMM peak, best "
                     f"mode and flavour: " + "; ".join(verdicts) + ".")
    gaps = [s for s in best.values() if s["ratio"] > GAP]
    if gaps:
        listed = "; ".join(f"{s['label']} {s['task']} {s['precision']}: {s['slower']} {s['ratio']:.2f}x" for s in gaps)
        lines.append(f"- Cases where one framework is more than {GAP}x slower in its best mode and flavour: {listed}.")
    else:
        lines.append(f"- No case has one framework more than {GAP}x slower in its best mode and flavour.")
    if profiles:
        lines.append("- Per-op profiles: " + ", ".join(f"[{Path(p).name}]({Path(p).name})" for p in profiles) + ".")
    return lines


def flavour_costs(rows: list[dict]) -> list[str]:
    """What the parity flavour costs: per case, task and precision, each framework's best parity time over its best
    stock time (the stock flavour timed in fewer modes: the ratio compares the same modes)."""
    lines = ["| case | task | precision | torch parity ms | torch stock ms | torch parity/stock | tf parity ms | "
             "tf stock ms | tf parity/stock |", "|---|---|---|---|---|---|---|---|---|"]
    for s in report.best_modes(rows):
        cells = []
        for fw in ("torch", "tf"):
            stock = s[f"{fw} stock"]
            same_modes = [r for r in rows if (r["label"], r["task"], r["precision"], r["framework"])
                          == (s["label"], s["task"], s["precision"], fw) and r.get("layers", "parity") == "parity"
                          and stock is not None and r["mode"] in _stock_modes(rows, s, fw) and r["error"] is None]
            parity = min(same_modes, key=lambda r: r["median_s"]) if same_modes else None
            ratio = f"{parity['median_s'] / stock['median_s']:.2f}x" if parity and stock else "—"
            cells += [_ms(parity), _ms(stock), ratio]
        lines.append(f"| {s['label']} | {s['task']} | {s['precision']} | " + " | ".join(cells) + " |")
    return lines


def _stock_modes(rows: list[dict], s: dict, fw: str) -> set[str]:
    return {r["mode"] for r in rows if (r["label"], r["task"], r["precision"], r["framework"])
            == (s["label"], s["task"], s["precision"], fw) and r.get("layers") == "stock"}


def real_size_table(rows: list[dict]) -> list[str]:
    labels = real_size_labels()
    lines = ["| case | task | framework | layers | mode | median ms | GFLOP/s | of GEMM peak | GFLOP per call (spec) | "
             "torch flop_counter | peak RSS MiB | added by the step MiB | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    counted = {(r["label"], r["task"]): r.get("profiler_flops_grouped", r["profiler_flops"]) for r in rows
               if r.get("profiler_flops") is not None}

    for r in rows:
        if r.get("label") not in labels:
            continue
        ok = r["error"] is None
        check = counted.get((r["label"], r["task"]))
        agree = "—" if check is None else ("equal" if check == r["flops"] else f"{check / 1e9:.3f} (DIFFERENT)")
        added = scaling.added_mib(r)
        lines.append(f"| {r['label']} | {r['task']} | {r['framework']} | {r.get('layers', 'parity')} | {r['mode']} | "
                     f"{_ms(r) if ok else '—'} | {_rate(r)} | {_pct(r)} | "
                     f"{r['flops'] / 1e9:.3f} | {agree} | {r['peak_rss_mib']:.0f} | "
                     f"{'—' if added is None else f'{added:.0f}'} | " + (r["error"] or "") + " |")
    return lines


def page(full: dict, scaled: dict | None, profiles: list[str], chart: str, scaling_chart: str | None) -> str:
    rows = report.with_rates(full["rows"])
    versions = ", ".join(f"{k} {v}" for k, v in full["versions"].items())
    threads = "; ".join(dict.fromkeys(r["threads"] for r in rows if r.get("threads")))
    peaks, measured = report.gemm_peaks(rows), report.gemm_rates(rows)
    own = [r for r in rows if r.get("label") not in real_size_labels()]
    lines = [f"# segparity benchmarks: {full['header'].split(':')[0].removeprefix('segparity benchmarks, ')}, "
             f"{full['cpu']}", "",
             f"- **Machine**: {full['cpu']}; {threads}.",
             f"- **Versions**: {versions}.",
             "- **GEMM peak** (2048x2048 fp32/bf16, same run; the fastest of its GEMMs, before and after the "
             "networks where the run measured both): "
             + ", ".join(f"{fw} {p} {gf:.1f} GFLOP/s ({' then '.join(f'{v:.1f}' for v in measured[fw, p])})"
                         for (fw, p), gf in peaks.items()) + ".",
             f"- **FLOPs**: {report.flop_check(rows)}",
             "- **Reproduce**: `python -m benchmarks --json full.json`, `python -m benchmarks --scaling --json "
             "scaling.json` (a case again: `--case LABEL --json rerun.json`), then `python -m benchmarks.page --full "
             "full.json [--full rerun.json] --scaling scaling.json --out PAGE.md` (benchmarks/README.md); the merged "
             "rows are beside this page (`.json`, `-scaling.json`), re-runs listed at the end.", "", "## Targets", "", *targets(rows, profiles), "",
             "## Best mode and layer flavour per case", "",
             "`parity`: segparity's exact layers (the default); `stock`: `build_model(..., layers=\"stock\")`, each "
             "framework's own BatchNorm. Percentages: of the same framework's GEMM peak in the same precision.", "",
             *report.best_table(own), "", "## What exact layers cost", "",
             "Each framework's best parity time over its best stock time, in the modes both flavours ran:", "",
             *flavour_costs(rows), "", "## Real-size networks (fp32)", "", *real_size_table(rows), ""]
    if scaled:
        lines += ["## How cost grows", "", scaled["header"], ""]
        lines += [f"Re-run, its points replacing the run's: {header}\n" for header in scaled.get("reruns", [])]

        if scaling_chart:
            lines += [f"![training step time and memory against pixels per batch]({scaling_chart})", ""]
        lines += [scaling.markdown(scaled["rows"], scaled["threads"]).strip(), ""]
    lines += ["## Chart", "", f"![median time per case, task and mode]({chart})", "", "## Every measurement", "",
              *report.measurement_table(rows), "", "## Run header", "", full["header"], ""]
    for header in full.get("reruns", []):
        lines += ["Re-run, its rows replacing the run's (fractions of the GEMM peaks measured in the re-run):", "",
                  header, ""]

    return "\n".join(lines)


def _key(row: dict) -> tuple:
    return (row["label"], row["task"], row["framework"], row.get("layers", "parity"), row["mode"], row["precision"],
            row.get("threads_requested"))


def _in_sweep(row: dict, run: dict) -> bool:
    """Whether ``row``'s point is one of the sweep ``run`` was made with (a re-run may have changed the sweep)."""
    sweep = next((r["sweep"] for r in run["rows"] if "sweep" in r), None)
    if sweep is None:
        return True
    sweep = dict(sweep, networks={arch: {} for arch in sweep["networks"]})  # options do not change the labels' set
    points = {(c.arch, c.batch, c.size) for c in cases.Sweep(**sweep).cases()}
    return (row["case"]["arch"], row["case"]["batch"], row["case"]["size"]) in points


def merged(runs: list[dict]) -> dict:

    """The first run, its non-GEMM rows replaced by later runs' rows of the same key (``--case`` re-runs); each
    replacing row carries its own run's GEMM peak (``gemm_peak_gflops``: a fraction of peak is always of the GEMM
    measured in the same run), the first run's GEMM rows stay, and each later run's header is kept under ``reruns``
    (after the first's own, where it is itself a merged page's JSON)."""
    first = dict(runs[0])
    rows = {_key(r): r for r in first["rows"]}
    for run in runs[1:]:
        peaks = report.gemm_peaks(run["rows"])
        rows.update({_key(r): dict(r, gemm_peak_gflops=peaks.get((r["framework"], r["precision"])))
                     for r in run["rows"] if r["task"] != "gemm"})
    first["rows"] = list(rows.values())
    if "sweep" in (first["rows"][0] if first["rows"] else {}):  # a scaling run: points of a re-run's sweep may be new
        first["rows"] = [r for r in first["rows"] if _in_sweep(r, runs[-1])]

    first["reruns"] = first.get("reruns", []) + [run["header"] for run in runs[1:]]  # a merged page merged again
    return first


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m benchmarks.page", description=__doc__.splitlines()[0])
    parser.add_argument("--full", required=True, action="append", metavar="JSON",
                        help="python -m benchmarks --json's file; given again (a --case re-run), its rows replace the "
                             "first file's rows of the same case, task, framework, flavour, mode and precision")
    parser.add_argument("--scaling", action="append", default=[], metavar="JSON",
                        help="python -m benchmarks --scaling --json's file; given again (a --case re-run), its points "
                             "replace the first file's")
    parser.add_argument("--profile", action="append", default=[], metavar="MD",
                        help="a per-op profile (python -m benchmarks.profile_ops --markdown) beside the page, to link")
    parser.add_argument("--out", required=True, metavar="PAGE.md")
    args = parser.parse_args(argv)
    out = Path(args.out)
    for name in [*args.full, *args.scaling, *args.profile]:
        if not Path(name).is_file():
            parser.error(f"no such file: {name}")
    full = merged([json.loads(Path(name).read_text()) for name in args.full])
    scaled = merged([json.loads(Path(name).read_text()) for name in args.scaling]) if args.scaling else None
    chart = out.with_suffix(".png")
    report.bar_chart(report.with_rates(full["rows"]), chart, "torch (blue) vs tf (orange), median time")
    scaling_chart = None
    if scaled:
        scaling_chart = out.with_name(out.stem + "-scaling.png")
        scaling.plot(scaled["rows"], scaled["threads"], scaling_chart)
    text = page(full, scaled, [str(Path(p).relative_to(out.parent)) if Path(p).parent == out.parent else p
                               for p in args.profile], chart.name, scaling_chart.name if scaling_chart else None)
    atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    written = [out, chart]
    for suffix, document in (("", full), ("-scaling", scaled)):  # the merged rows the page was made from
        if document is not None:
            path = out.with_name(f"{out.stem}{suffix}.json")
            payload = json.dumps(document, indent=1)
            written.append(atomic_write(path, lambda tmp, payload=payload: Path(tmp).write_text(payload)))
    if scaling_chart:
        written.append(scaling_chart)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0



if __name__ == "__main__":
    sys.exit(main())
