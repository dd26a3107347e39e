"""One measurement in a fresh process: ``python -m benchmarks.worker '<json request>'`` prints one JSON row.

Threads are pinned before the framework runs anything; peak RSS is this process's own.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

from benchmarks.cases import Case
from benchmarks.timing import peak_rss_mib


def run(request: dict) -> dict:
    framework, task = request["framework"], request["task"]
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    modes = importlib.import_module(f"benchmarks.{framework}_modes")
    device = importlib.import_module(f"segmentation_{framework}.device")
    row = {**request, "threads": modes.threads(request["threads"]), "tf32": device.tf32_state()}
    try:
        if task == "gemm":
            timing = modes.gemm(request["n"], request["warmup"], request["repeats"], request["device"])
            row["flops"] = 2 * request["n"] ** 3
        else:
            case = Case(**request["case"])
            timing = modes.measure(case, task, request["mode"], request["warmup"], request["repeats"], request["device"])
        row.update(median_s=timing.median_s, iqr_s=timing.iqr_s, repeats=timing.repeats, warmup=timing.warmup,
                   peak_rss_mib=peak_rss_mib(), error=None)
    except Exception as error:  # a mode a framework cannot run here (no compiler, no XLA) is reported, not fatal
        row.update(median_s=None, iqr_s=None, peak_rss_mib=peak_rss_mib(),
                   error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
        traceback.print_exc(file=sys.stderr)
    if task != "gemm" and framework == "torch" and row["error"] is None and request.get("count_flops"):
        row["flops"] = modes.flops(Case(**request["case"]), task)
    return row


if __name__ == "__main__":
    print("BENCH_ROW " + json.dumps(run(json.loads(sys.argv[1]))))
