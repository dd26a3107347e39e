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


def determinism_state() -> str:
    """Which determinism switches are set, for reports."""
    return (f"torch use_deterministic_algorithms={torch.are_deterministic_algorithms_enabled()}, "
            f"cudnn.deterministic={torch.backends.cudnn.deterministic}, cudnn.benchmark={torch.backends.cudnn.benchmark}")


def device_names() -> list[str]:
    """The devices torch can run on here, named (the CPU, then each CUDA device)."""
    return ["cpu"] + [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]


def environment() -> dict[str, object]:
    """torch's version, devices, TF32 and determinism settings."""
    return {"version": torch.__version__, "devices": device_names(), "tf32": tf32_state(),
            "determinism": determinism_state(), "threads": torch.get_num_threads()}


@contextlib.contextmanager
def precision(dtype: str):
    """Build torch modules in ``dtype`` ("float32" or "float64"): the default dtype inside the block."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
