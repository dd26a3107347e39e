"""What a probe records of one layer call (``segmentation_{torch,tf}/probe.py``), in plain numpy: the type both
framework probes produce and ``segparity.parity.layerdiff`` compares. Framework-neutral, so the probes need
nothing from the driver that loads them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerCall:
    """One call of one layer during a forward pass: positional arguments and output, as numpy arrays in
    the recording framework's own layout (``to_torch`` / ``to_keras`` move between them)."""

    path: str
    args: list
    output: object
