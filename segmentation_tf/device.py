"""Device choice and TF32 switch, TensorFlow side."""

from __future__ import annotations

import tensorflow as tf

DEVICES = ("cpu", "cuda")


def resolve_device(name: str) -> str:
    """``"cpu"`` or ``"cuda"`` -> a TensorFlow device string; a clear error when no GPU is visible."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not tf.config.list_physical_devices("GPU"):
        raise ValueError("device='cuda' was requested but TensorFlow sees no GPU "
                         "(tf.config.list_physical_devices('GPU') is empty; the 'gpu' extra installs tensorflow[and-cuda])")
    return "/GPU:0" if name == "cuda" else "/CPU:0"


def set_tf32(enabled: bool) -> None:
    """Allow or forbid TF32 in GPU matmuls and convolutions (parity runs forbid it)."""
    tf.config.experimental.enable_tensor_float_32_execution(enabled)


def tf32_state() -> str:
    """What TF32 is set to, for reports."""
    return f"tf tensor_float_32_execution={tf.config.experimental.tensor_float_32_execution_enabled()}"
