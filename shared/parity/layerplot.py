"""A picture of a layer-by-layer diff (``segparity.parity.layerdiff.LayerReport``): per layer in forward order, the
isolated and the end-to-end max relative error on a log scale, ``rtol`` as a line, failing rows in red and the
first failing layer named. matplotlib, Agg backend, written atomically."""

from __future__ import annotations

from pathlib import Path

from segparity.plotting import pyplot, save_png

FLOOR = 1e-12  # where an exact zero is drawn on the log scale


def plot_layer_report(report, path: str | Path, title: str = "") -> Path:
    """Write ``report``'s picture (``layer_report_figure``) to ``path`` as a PNG; returns the path."""
    return save_png(layer_report_figure(report, title), path)


def layer_report_figure(report, title: str = ""):
    """The figure: one point per compared layer and column, failing points red, the first layer over tolerance
    (isolated, else end to end) named beside a red vertical line."""
    plt = pyplot()
    count = len(report.rows)
    figure, axes = plt.subplots(figsize=(min(4 + 0.08 * count, 24), 4.5), constrained_layout=True)
    positions = list(range(1, count + 1))
    for column, label, marker in (("isolated", "isolated (torch's input)", "o"), ("end_to_end", "end to end", "s")):
        points = [(i, getattr(row, column)) for i, row in zip(positions, report.rows) if getattr(row, column)]
        xs = [i for i, _ in points]
        ys = [max(agreement.max_rel, FLOOR) for _, agreement in points]
        axes.plot(xs, ys, marker=marker, markersize=3, linewidth=0.8, label=label)
        failing = [(i, y) for (i, agreement), y in zip(points, ys) if not agreement.passed]
        if failing:
            axes.scatter(*zip(*failing), color="red", s=30, zorder=3,
                         label=f"over tolerance ({column.replace('_', ' ')})")
    axes.axhline(report.rtol, color="black", linestyle="--", linewidth=1, label=f"rtol {report.rtol:g}")
    for column in ("isolated", "end_to_end"):
        first = report.first_failure(column)
        if first is not None:
            index = report.rows.index(first) + 1
            axes.axvline(index, color="red", linewidth=0.8)
            axes.annotate(f"first over tolerance ({column.replace('_', ' ')}): #{index} {first.torch_path}",
                          xy=(index, report.rtol), xytext=(4, 10 if column == "isolated" else -14),
                          textcoords="offset points", color="red", fontsize=8)
            break
    axes.set_yscale("log")
    axes.set_xlim(0, count + 1)
    axes.set_xlabel("layer, in torch's forward order (#, as in the table)")
    axes.set_ylabel("max relative error, Keras vs torch")
    mode = "training" if report.training else "eval"
    axes.set_title(title or f"segparity diff: {count} layers, {mode} mode; {'pass' if report.passed else 'FAIL'}")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return figure
