"""Device choice and TF32 switch, TensorFlow side."""

from __future__ import annotations

import contextlib
import os

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


def determinism_state() -> str:
    """Which determinism switches are set, for reports (``tf.config.experimental.enable_op_determinism``
    has no public getter; TensorFlow's own ``config.is_op_determinism_enabled`` is read)."""
    from tensorflow.python.framework import config as tf_config

    return (f"tf op_determinism={tf_config.is_op_determinism_enabled()}, "
            f"TF_DETERMINISTIC_OPS={os.environ.get('TF_DETERMINISTIC_OPS', 'unset')}, "
            f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}")


def device_names() -> list[str]:
    """The devices TensorFlow can run on here, named (``tf.config.list_physical_devices``)."""
    return [f"{d.device_type.lower()}:{d.name.rsplit(':', 1)[-1]}" for d in tf.config.list_physical_devices()]


def environment() -> dict[str, object]:
    """TensorFlow's and Keras's versions, devices, TF32 and determinism settings."""
    return {"version": f"tensorflow {tf.__version__}, keras {keras.__version__}", "devices": device_names(),
            "tf32": tf32_state(), "determinism": determinism_state(),
            "threads": f"intra_op {tf.config.threading.get_intra_op_parallelism_threads()} (0: TensorFlow chooses)"}


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
