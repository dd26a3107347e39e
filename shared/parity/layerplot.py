"""A picture of a layer-by-layer diff (``segparity.parity.layerdiff.LayerReport``): per layer in forward order, the
isolated and the end-to-end max relative error on a log scale, ``rtol`` as a line, failing rows in red and the
first failing layer named. matplotlib, Agg backend, written atomically."""

from __future__ import annotations

from pathlib import Path

from segparity.plotting import pyplot, save_png

FLOOR = 1e-12  # where an exact zero is drawn on the log scale
CEILING = 1e3  # where an output of another shape (max error inf) is drawn, as an "x"


def plot_layer_report(report, path: str | Path, title: str = "") -> Path:
    """Write ``report``'s picture (``layer_report_figure``) to ``path`` as a PNG; returns the path."""
    return save_png(layer_report_figure(report, title), path)


def layer_report_figure(report, title: str = ""):
    """The figure: one point per compared layer and column, failing points red (an "x" at the top where the outputs'
    shapes differ), and the layer to start from named beside a red vertical line: the first port error
    (``LayerReport.first_port_error``), else the first layer over tolerance isolated, else end to end."""
    plt = pyplot()
    count = len(report.rows)
    figure, axes = plt.subplots(figsize=(min(4 + 0.08 * count, 24), 4.5), constrained_layout=True)
    positions = list(range(1, count + 1))
    for column, label, marker in (("isolated", "isolated (torch's input)", "o"), ("end_to_end", "end to end", "s")):
        points = [(i, getattr(row, column)) for i, row in zip(positions, report.rows) if getattr(row, column)]
        xs = [i for i, _ in points]
        ys = [min(max(agreement.max_rel, FLOOR), CEILING) for _, agreement in points]
        axes.plot(xs, ys, marker=marker, markersize=3, linewidth=0.8, label=label)
        failing = [(i, y) for (i, agreement), y in zip(points, ys) if not agreement.passed and y < CEILING]
        if failing:
            axes.scatter(*zip(*failing), color="red", s=30, zorder=3,
                         label=f"over tolerance ({column.replace('_', ' ')})")
        reshaped = [i for i, y in zip(xs, ys) if y >= CEILING]
        if reshaped:
            axes.scatter(reshaped, [CEILING] * len(reshaped), color="red", marker="x", s=40, zorder=3,
                         label=f"output shape differs ({column.replace('_', ' ')})")
    axes.axhline(report.rtol, color="black", linestyle="--", linewidth=1, label=f"rtol {report.rtol:g}")
    for label, first in (("port error starts", report.first_port_error()),
                         ("first over tolerance (isolated)", report.first_failure("isolated")),
                         ("first over tolerance (end to end)", report.first_failure("end_to_end"))):
        if first is not None:
            index = report.rows.index(first) + 1
            axes.axvline(index, color="red", linewidth=0.8)
            axes.annotate(f"{label}: #{index} {first.torch_path}", xy=(index, report.rtol), xytext=(4, 10),
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
