"""How long each test file takes: ``python -m benchmarks.suite_times [--markdown PATH]``.

Runs the whole suite once with ``--durations=0`` and sums setup, call and teardown per file.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from segparity.atomic import atomic_write

ROOT = Path(__file__).resolve().parents[1]
DURATION = re.compile(r"^(\d+\.\d+)s (setup|call|teardown)\s+(\S+?)::")


def per_file(output: str) -> dict[str, float]:
    """Seconds per test file from pytest's ``--durations=0`` report."""
    totals: dict[str, float] = defaultdict(float)
    for line in output.splitlines():
        match = DURATION.match(line.strip())
        if match:
            totals[match.group(3)] += float(match.group(1))
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite_times", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "--durations=0", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    totals = per_file(done.stdout)
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    lines = [f"Test suite: {summary} (wall {wall:.0f} s, exit status {done.returncode})", "",
             "| test file | seconds (setup + call + teardown) |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in totals.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        atomic_write(args.markdown, lambda tmp: Path(tmp).write_text(text))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
