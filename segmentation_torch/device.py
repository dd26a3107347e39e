"""Device choice and TF32 switch, PyTorch side."""

from __future__ import annotations

import contextlib

import torch

DEVICES = ("cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` -> a ``torch.device``; a clear error when CUDA is not there."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no CUDA device (torch.cuda.is_available() is False)")
    return torch.device(name)


def set_tf32(enabled: bool) -> None:
    """Allow or forbid TF32 in CUDA matmuls and convolutions (parity runs forbid it)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def tf32_state() -> str:
    """What TF32 is set to, for reports."""
    return (f"torch matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}")


@contextlib.contextmanager
def precision(dtype: str):
    """Build torch modules in ``dtype`` ("float32" or "float64"): the default dtype inside the block."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
