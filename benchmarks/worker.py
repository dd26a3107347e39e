"""Measurements in a fresh process: ``python -m benchmarks.worker '<json list of requests>'`` prints
one ``BENCH_ROW <json>`` line per request.

Threads are pinned before the framework runs anything. Peak RSS is this process's own, so it is a
single measurement's only when the process runs one request (the full run; ``--quick`` runs all of a
framework's requests in one process and says so in each row); ``baseline_rss_mib`` is the RSS before the request
built anything (the framework imported), so ``peak_rss_mib - baseline_rss_mib`` is what the measurement added.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

from benchmarks.cases import Case
from benchmarks.timing import current_rss_mib, peak_rss_mib


def run(request: dict) -> dict:
    framework, task, precision = request["framework"], request["task"], request["precision"]
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    modes = importlib.import_module(f"benchmarks.{framework}_modes")
    device = importlib.import_module(f"segmentation_{framework}.device")
    row = {**request, "threads": modes.threads(request["threads"]), "tf32": device.tf32_state(),
           "baseline_rss_mib": current_rss_mib()}  # the framework imported, nothing built: what peak RSS adds to
    try:
        row["device_name"] = modes.check_device(request["device"])
        if task == "gemm":
            timing = modes.gemm(request["n"], precision, request["warmup"], request["repeats"], request["device"])
        else:
            timing = modes.measure(Case(**request["case"]), task, request["mode"], precision, request["warmup"],
                                   request["repeats"], request["device"])
        row.update(median_s=timing.median_s, iqr_s=timing.iqr_s, repeats=timing.repeats, warmup=timing.warmup,
                   error=None)
    except Exception as error:  # a mode a framework cannot run here (no compiler, no XLA) is reported, not fatal
        row.update(median_s=None, iqr_s=None, error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
        traceback.print_exc(file=sys.stderr)
    row.update(peak_rss_mib=peak_rss_mib(), peak_device_mib=modes.device_peak_mib(request["device"])
               if row["error"] is None else None)
    if task == "gemm":
        row["flops"] = 2 * request["n"] ** 3
    else:
        row["flops"] = Case(**request["case"]).flops(task)
        if request.get("count_flops"):  # the check: torch's profiler on the built model
            counts = modes.profiler_flops(Case(**request["case"]), task)
            row["profiler_flops"], row["profiler_flops_grouped"] = counts["torch"], counts["grouped"]

    return row


if __name__ == "__main__":
    for request in json.loads(sys.argv[1]):
        print("BENCH_ROW " + json.dumps(run(request)), flush=True)
