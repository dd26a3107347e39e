"""Device choice and TF32 switch, TensorFlow side."""

from __future__ import annotations

import contextlib

import keras
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


@contextlib.contextmanager
def precision(dtype: str):
    """Build (and run) Keras layers, losses and optimisers in ``dtype`` ("float32" or "float64")."""
    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous[0])
        keras.config.set_dtype_policy(previous[1])
