"""The machine a report ran on: Python, operating system, CPU model and core count, plus each
framework's versions, devices, TF32 and determinism settings (``segmentation_*/device.py``, imported
by name: this package imports no framework)."""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """Python version, platform and CPU, for report headers."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": f"{cpu_model()}, {os.cpu_count()} cores"}


def environment() -> dict:
    """``machine()`` plus ``environment()`` of ``segmentation_torch.device`` and ``segmentation_tf.device``."""
    return {"machine": machine(), **{framework: importlib.import_module(f"segmentation_{framework}.device").environment()
                                     for framework in ("torch", "tf")}}
