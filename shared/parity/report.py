"""Report writing: the parity table for people and the same rows as JSON for machines."""

from __future__ import annotations

import json
import os
from pathlib import Path

from segparity.atomic import atomic_write

COLUMNS = ("arch", "config", "quantity", "max_abs", "max_rel", "rtol", "atol", "passed")


def format_table(rows, verdicts: tuple[str, str] = ("pass", "FAIL")) -> str:
    """A fixed-width text table (Markdown-compatible) of report rows; ``verdicts``: the words for within and over
    the tolerance."""
    cells = [COLUMNS] + [
        (r.arch, r.config, r.quantity, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", f"{r.rtol:g}", f"{r.atol:g}",
         verdicts[0] if r.passed else verdicts[1])
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def format_summary(rows) -> str:
    """One line per (architecture, quantity): configurations, worst errors, largest atol used, verdict."""
    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        groups.setdefault((r.arch, r.quantity), []).append(r)
    cells = [("arch", "quantity", "configs", "worst max_abs", "worst max_rel", "largest atol", "passed")]
    for (arch, quantity), group in groups.items():
        cells.append((arch, quantity, str(len(group)), f"{max(r.max_abs for r in group):.2e}",
                      f"{max(r.max_rel for r in group):.2e}", f"{max(r.atol for r in group):.2e}",
                      "pass" if all(r.passed for r in group) else "FAIL"))
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def format_environment(environment: dict) -> str:
    """Two lines of ``segparity.parity.machine.environment()``: per framework, its devices, TF32, determinism and threads."""
    lines = []
    for framework in ("torch", "tf"):
        e = environment[framework]
        lines.append(f"{framework} {e['version']}: devices {', '.join(e['devices'])}; {e['tf32']}; {e['determinism']}; "
                     f"threads {e['threads']}")
    return "\n".join(lines)


def write_json(rows, path: str | os.PathLike, environment: dict, stock_rows=()) -> Path:
    """Write ``{"environment": environment, "rows": [row.to_json(), ...], "stock_rows": [...]}`` to ``path`` atomically
    (temporary file, then rename). ``stock_rows``: the informational rows of the ``layers="stock"`` flavour
    (``segparity.parity.suite.stock_rows``), not part of the verdict."""
    text = json.dumps({"environment": environment, "rows": [r.to_json() for r in rows],
                       "stock_rows": [r.to_json() for r in stock_rows]}, indent=1) + "\n"

    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
