"""matplotlib on the Agg backend (no display needed) and atomic PNG writes, for every figure segparity draws."""

from __future__ import annotations

from pathlib import Path

from segparity.atomic import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` as a PNG (atomically) and close it; returns the path."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(figure)
