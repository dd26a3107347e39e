"""Parity maths: compare two arrays in float32 and say by how much they differ.

Criterion (numpy ``allclose``, elementwise): ``|actual - expected| <= atol + rtol * |expected|``.
Reported: max absolute error, and max relative error ``|actual - expected| / max(|expected|, atol)``
(``atol`` as the floor keeps near-zero references from reporting huge ratios).

Gradients are compared *normalised*: both arrays are divided by ``scale``, the largest magnitude of
the whole reference gradient (all weight tensors together, or the whole input gradient). Losses are
means over N*H*W pixels, so raw gradients are ~1e-4 and a raw atol of 1e-5 would accept almost any
gradient; after normalisation atol 1e-5 means "1e-5 of the gradient's largest entry". Using the whole
gradient (not each tensor) keeps tensors whose exact gradient is zero from dividing noise by noise.

float32 floor: a weight gradient sums ~N*H*W products, so each framework lands about
sqrt(N*H*W) * 6e-8 (relative to the gradient's scale) from the exact value: ~5e-6 at N*H*W = 6000,
measured against a float64 torch run. Parity runs keep N*H*W of the largest feature map below ~8000
so this floor stays under atol / 2 (pitfall "float32 gradient accumulation", docs/pitfalls.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RTOL = 1e-4
ATOL = 1e-5


@dataclass(frozen=True)
class Comparison:
    """One compared quantity."""

    quantity: str
    max_abs: float
    max_rel: float
    rtol: float
    atol: float
    passed: bool
    detail: str = ""  # where the worst element is, or why the comparison failed outright


def compare(actual, expected, *, rtol: float = RTOL, atol: float = ATOL, quantity: str = "",
            scale: float | None = None) -> Comparison:
    """Compare ``actual`` against the reference ``expected`` (both cast to float32).

    With ``scale``, both are divided by it first (used for gradients, see the module docstring).
    """
    a = np.asarray(actual, dtype=np.float32)
    b = np.asarray(expected, dtype=np.float32)
    if a.shape != b.shape:
        return Comparison(quantity, float("inf"), float("inf"), rtol, atol, False,
                          f"shape mismatch: actual {a.shape} vs expected {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return Comparison(quantity, float("nan"), float("nan"), rtol, atol, False, "NaN or infinity present")
    if scale is not None and scale > 0:
        a, b = a / np.float32(scale), b / np.float32(scale)
    if a.size == 0:
        return Comparison(quantity, 0.0, 0.0, rtol, atol, True, "empty")
    err = np.abs(a.astype(np.float64) - b.astype(np.float64))
    rel = err / np.maximum(np.abs(b.astype(np.float64)), atol)
    passed = bool(np.all(err <= atol + rtol * np.abs(b.astype(np.float64))))
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
    return Comparison(quantity, float(err.max()), float(rel.max()), rtol, atol, passed,
                      f"worst at index {tuple(int(i) for i in worst)}")


def merge(comparisons: list[Comparison], quantity: str) -> Comparison:
    """One row for several tensors of one quantity (e.g. every weight gradient): worst case wins."""
    worst = max(comparisons, key=lambda c: (not c.passed, c.max_abs))
    failing = [c.quantity for c in comparisons if not c.passed]
    detail = f"{len(comparisons)} tensors; worst {worst.quantity}" + (f"; failing: {', '.join(failing)}" if failing else "")
    return Comparison(quantity, max(c.max_abs for c in comparisons), max(c.max_rel for c in comparisons),
                      worst.rtol, worst.atol, not failing, detail)


def assert_close(actual, expected, *, rtol: float = RTOL, atol: float = ATOL, quantity: str = "value",
                  scale: float | None = None) -> Comparison:
    """``compare`` and raise ``AssertionError`` with the numbers when it fails."""
    result = compare(actual, expected, rtol=rtol, atol=atol, quantity=quantity, scale=scale)
    if not result.passed:
        raise AssertionError(
            f"{quantity}: parity failed (rtol={rtol}, atol={atol}{f', divided by {scale:.3e}' if scale else ''}): "
            f"max abs error {result.max_abs:.3e}, max rel error {result.max_rel:.3e}; {result.detail}"
        )
    return result
