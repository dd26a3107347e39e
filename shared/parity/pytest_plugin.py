"""pytest plugin ``segparity`` (registered through the ``pytest11`` entry point when segparity is
installed): fixtures that check your own torch/Keras model pairs with ``segparity.parity.layerdiff``.

Fixtures:

- ``parity_tolerance``: ``(rtol, atol)``, from ``--parity-rtol`` / ``--parity-atol`` on the command
  line, else the ``parity_rtol`` / ``parity_atol`` ini options, else segparity's defaults (1e-4, 1e-5);
- ``assert_parity``: ``segparity.parity.layerdiff.assert_parity`` with those tolerances as defaults. On failure
  the assertion message holds the per-layer table and names the first layer over tolerance.

Every pair checked is listed in pytest's terminal summary with its output error.
"""

from __future__ import annotations

import pytest

from segparity.parity.layerdiff import assert_parity as _assert_parity
from segparity.comparison.tolerance import ATOL, RTOL

_CHECKED = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("segparity", "torch/Keras parity (segparity)")
    group.addoption("--parity-rtol", type=float, default=None, help=f"relative tolerance (default {RTOL:g})")
    group.addoption("--parity-atol", type=float, default=None, help=f"absolute tolerance (default {ATOL:g})")
    parser.addini("parity_rtol", f"relative tolerance of assert_parity (default {RTOL:g})", default=str(RTOL))
    parser.addini("parity_atol", f"absolute tolerance of assert_parity (default {ATOL:g})", default=str(ATOL))


def pytest_configure(config):
    config.stash[_CHECKED] = []


@pytest.fixture
def parity_tolerance(request) -> tuple[float, float]:
    """``(rtol, atol)`` for this run (command line, then ini file, then defaults)."""
    config = request.config
    rtol = config.getoption("--parity-rtol")
    atol = config.getoption("--parity-atol")
    return (float(config.getini("parity_rtol")) if rtol is None else rtol,
            float(config.getini("parity_atol")) if atol is None else atol)


@pytest.fixture
def assert_parity(request, parity_tolerance):
    """``assert_parity(torch_fn, tf_fn, inputs, *, rtol=None, atol=None, name_map=None, training=False,
    channels_first=())``:
    ``segparity.parity.layerdiff.assert_parity`` with the run's tolerances unless given; returns the report."""
    checked = request.config.stash[_CHECKED]

    def check(torch_fn, tf_fn, inputs, *, rtol: float | None = None, atol: float | None = None,
              name_map: dict[str, str] | None = None, training: bool = False, channels_first: tuple[str, ...] = ()):
        __tracebackhide__ = True  # a failure shows the user's line and the table, not the plugin's source
        rtol = parity_tolerance[0] if rtol is None else rtol
        atol = parity_tolerance[1] if atol is None else atol
        try:
            report = _assert_parity(torch_fn, tf_fn, inputs, rtol=rtol, atol=atol, name_map=name_map, training=training,
                                    channels_first=channels_first)
        except AssertionError as error:
            checked.append((request.node.nodeid, getattr(error, "report", None)))
            raise
        checked.append((request.node.nodeid, report))
        return report

    return check


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    checked = config.stash.get(_CHECKED, [])
    if not checked:
        return
    terminalreporter.section("segparity: torch/Keras pairs checked")
    for nodeid, report in checked:
        if report is None:
            terminalreporter.write_line(f"{nodeid}: no report (the check failed before comparing)")
            continue
        layers = f", {len(report.rows)} layers" if report.rows else ""
        terminalreporter.write_line(f"{nodeid}: output max_abs {report.output.max_abs:.2e} at atol "
                                    f"{report.output.atol:g}{layers}: {'pass' if report.passed else 'FAIL'}")
