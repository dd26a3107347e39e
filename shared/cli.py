"""The ``segparity`` command line.

``segparity report [--arch NAME ...] [--json PATH] [--device cpu|cuda] [--seed N]``: build every
registered architecture in both frameworks with shared random weights, run the parity checks on a
synthetic batch, print the table; exit status 1 if any row fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from shared import __version__
from shared.specs import list_models


def _report(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from shared import suite
    from shared.report import format_summary, format_table, write_json

    unknown = [a for a in args.arch if a not in suite.SUITES]
    if unknown:
        print(f"segparity report: unknown --arch {', '.join(unknown)}; known: {', '.join(list_models())}",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    versions = {**suite.harness("torch").versions(), **suite.harness("tf").versions()}
    tf32 = suite.set_tf32(False)
    print(f"segparity {__version__} parity report: python {platform.python_version()}, "
          + ", ".join(f"{k} {v}" for k, v in versions.items()) + f", device {args.device}")
    print(f"TF32 switched off for parity: {tf32}; TensorFlow oneDNN ops: "
          f"{'off' if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0' else 'on'} (TF_ENABLE_ONEDNN_OPTS="
          f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})")
    print("Reference = torch; tolerance |tf - torch| <= atol + rtol*|torch|; gradients divided by the "
          "reference gradient's max |value| first; atol = 1e-5 + twice torch's own float32 error on that "
          "quantity, measured against a torch float64 run of the same case (docs/pitfalls.md, float32_floor).")
    print(f"A batch whose only failures are gradients, with a ReLU/max-pool input within {suite.KINK_MARGIN:g} float32 "
          f"errors of its kink, is set aside and the next one used (at most {suite.MAX_KINK_REDRAWS}; docs/pitfalls.md).")
    cases = [case for arch in args.arch for case in suite.SUITES[arch](seed=args.seed)]
    rows = []
    for case in tqdm(cases, desc="parity", unit="config", file=sys.stderr, disable=None):
        counts = suite.parameter_counts(case)
        same = "equal" if counts["torch"] == counts["tf"] else "DIFFERENT"
        result = suite.run_case(case, device=args.device)
        note = "".join(f"; batch {seed} set aside: gradients split at a ReLU/max-pool kink (margin {margin:.1f})"
                       for seed, margin in result.redrawn)
        tqdm.write(f"{case.arch} [{case.label()}]: parameters torch {counts['torch']:,} / tf {counts['tf']:,} "
                   f"({same}); data seed {result.inputs.data_seed}{note}")
        rows += result.rows
        if counts["torch"] != counts["tf"]:
            rows.append(suite.Row(case.arch, case.label(), "parameter_count", abs(counts["torch"] - counts["tf"]),
                                  1.0, 0.0, 0.0, False))
    print(format_table(rows))
    print("\nWorst case per architecture and quantity:")
    print(format_summary(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed ({len(cases)} configurations, "
          f"{time.perf_counter() - start:.1f} s)")
    for r in failed:
        print(f"FAIL {r.arch} [{r.config}] {r.quantity}: {r.detail}")
    if args.json:
        write_json(rows, args.json)
        print(f"rows written to {args.json}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segparity", description="Segmentation networks in PyTorch and Keras, proven equal.")
    parser.add_argument("--version", action="version", version=f"segparity {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="parity report of every architecture on synthetic data")
    report.add_argument("--arch", nargs="+", default=list_models(), metavar="NAME",
                        help=f"architectures to check (default: all: {', '.join(list_models())})")
    report.add_argument("--json", metavar="PATH", help="also write the rows as a JSON list of objects")
    report.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    report.add_argument("--seed", type=int, default=0, help="seed of weights and synthetic data (default 0)")
    report.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
