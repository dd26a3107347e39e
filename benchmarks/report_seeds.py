"""Does ``segparity report --seed S`` pass for every seed in a range? ``python -m benchmarks.report_seeds
[--first 0] [--last 20] [--arch NAME ...] [--markdown PATH]``.

Runs the report (by default segparity's own four networks, every configuration; ``--arch`` adds torchvision's
models, about 4 minutes more a seed) once per seed in this process, as the command line does, and tabulates per seed: rows passed and failed, configurations that needed a batch set
aside at a ReLU/max-pool kink (``segparity.parity.suite``'s redraw rule, pitfall ``relu_kink_flip``) and how many.
Too long for the test suite (about half a minute a seed on 2 cores): run it by hand after a change to the
networks, the trace or the tolerances. Exit status 1 if any seed fails.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from segparity import cli
from segparity.atomic import atomic_write
from segparity.parity.machine import environment

SET_ASIDE = re.compile(r"^(\S+) \[(.+?)\]: .*; data seed (\d+)((?:; batch \d+ set aside: .*)*)$")


ARCHES = ("deeplabv3plus", "fcn", "segnet", "unet")  # segparity's own networks


def run_seed(seed: int, arches: tuple = ARCHES) -> dict:
    """One report of ``arches`` at ``seed``: status, row counts and the configurations with batches set aside."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.json"
        out = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):
            status = cli.main(["report", "--arch", *arches, "--seed", str(seed), "--json", str(path)])
        seconds = time.perf_counter() - start
        rows = json.loads(path.read_text())["rows"]
    aside = []
    for line in out.getvalue().splitlines():
        match = SET_ASIDE.match(line)
        if match and match.group(4):
            aside.append((f"{match.group(1)} [{match.group(2)}]", match.group(4).count("set aside")))
    failed = [f"{r['arch']} [{r['config']}] {r['quantity']}" for r in rows if not r["passed"]]
    return {"seed": seed, "status": status, "rows": len(rows), "failed": failed, "set_aside": aside,
            "configurations": len({(r["arch"], r["config"]) for r in rows}), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_seeds", description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--last", type=int, default=20)
    parser.add_argument("--arch", nargs="+", default=list(ARCHES), metavar="NAME",
                        help="architectures (default: segparity's own four)")
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    results = []
    for seed in range(args.first, args.last + 1):
        result = run_seed(seed, tuple(args.arch))
        results.append(result)
        print(f"seed {seed}: {'pass' if result['status'] == 0 else 'FAIL'}, {result['rows'] - len(result['failed'])}/"
              f"{result['rows']} rows, {len(result['set_aside'])} configuration(s) with a batch set aside, "
              f"{result['seconds']:.0f} s", file=sys.stderr, flush=True)
    configurations = sum(r["configurations"] for r in results)
    aside = [(r["seed"], name, n) for r in results for name, n in r["set_aside"]]
    lines = [f"# `segparity report --arch {' '.join(args.arch)} --seed S`, S = {args.first}..{args.last}", "",
             f"Python {platform.python_version()}, {environment()['machine']['cpu']}; "
             + ", ".join(f"{k} {v}" for k, v in cli_versions().items()) + ".", "",
             f"{sum(r['status'] == 0 for r in results)} of {len(results)} seeds pass; {configurations} configurations, "
             f"{configurations - len(aside)} on their first batch, {sum(n == 1 for *_, n in aside)} after setting one "
             f"batch aside, {sum(n > 1 for *_, n in aside)} after more.", "",
             "| seed | result | rows passed | configurations with a batch set aside | seconds |", "|---|---|---|---|---|"]
    for r in results:
        names = "; ".join(f"{name} ({n})" for name, n in r["set_aside"]) or "none"
        lines.append(f"| {r['seed']} | {'pass' if r['status'] == 0 else 'FAIL'} | {r['rows'] - len(r['failed'])}/"
                     f"{r['rows']} | {names} | {r['seconds']:.0f} |")
    failures = [f"- seed {r['seed']}: {f}" for r in results for f in r["failed"]]
    text = "\n".join(lines + ([""] + failures if failures else [])) + "\n"
    print(text)
    if args.markdown:
        atomic_write(args.markdown, lambda tmp: Path(tmp).write_text(text))
    return 0 if all(r["status"] == 0 for r in results) else 1


def cli_versions() -> dict[str, str]:
    from segparity.parity import suite

    return {**suite.harness("torch").versions(), **suite.harness("tf").versions()}


if __name__ == "__main__":
    sys.exit(main())
