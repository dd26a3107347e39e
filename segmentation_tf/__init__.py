"""segparity, Keras 3 side (TensorFlow backend). Models take and return ``(N, H, W, C)`` tensors.

Twin of ``segmentation_torch``: the same modules, public names and arguments.

Keras 3 picks its backend once, at its first import, from ``KERAS_BACKEND`` or ``~/.keras/keras.json``.
This package needs the TensorFlow backend: if Keras is not imported yet it sets
``KERAS_BACKEND=tensorflow`` (warning when the environment asked for another backend); if Keras was
already imported with another backend it raises ``ImportError`` saying how to fix it.
"""

import os
import sys
import warnings


def _ensure_tensorflow_backend() -> None:
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise ImportError(
                f"segmentation_tf needs Keras 3 on the TensorFlow backend, but Keras was already imported "
                f"with the {keras.backend.backend()!r} backend. Import segmentation_tf before keras, or set "
                f"KERAS_BACKEND=tensorflow before starting Python."
            )
        return
    requested = os.environ.get("KERAS_BACKEND")
    if requested not in (None, "tensorflow"):
        warnings.warn(f"KERAS_BACKEND={requested!r} overridden: segmentation_tf runs Keras on the TensorFlow backend",
                      RuntimeWarning, stacklevel=3)
    os.environ["KERAS_BACKEND"] = "tensorflow"


# Lines TensorFlow writes to stderr while it loads and looks for GPUs, which say nothing about the work
# on a machine without a GPU (or are about how the wheel was built); anything else it writes is kept.
_START_UP_NOISE = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on",
                   "Could not find cuda drivers", "failed call to cuInit", "cpu_feature_guard.cc",
                   "To enable the following instructions", "rebuild TensorFlow with the appropriate compiler flags",
                   "Unable to register cuDNN factory", "Unable to register cuFFT factory",
                   "Unable to register cuBLAS factory", "computation placer already registered",
                   "TF-TRT Warning: Could not find TensorRT")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and list its devices (where ``cuInit`` runs) with file descriptor 2 captured,
    then write back every captured line except ``_START_UP_NOISE``: a real warning or error still shows.
    TensorFlow's C++ log lines are written by native code, before ``TF_CPP_MIN_LOG_LEVEL`` applies to some
    of them, so only capturing the descriptor hides them. Python warnings are not touched.
    ``TF_CPP_MIN_LOG_LEVEL=0`` in the environment (asking for every TensorFlow log line) imports it plainly."""
    if "tensorflow" in sys.modules:
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow  # noqa: F401
        return
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (an embedded interpreter): import as is
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not any(noise in line for noise in _START_UP_NOISE)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")


_ensure_tensorflow_backend()
_import_tensorflow_quietly()

from segmentation_tf.registry import build_model, list_models  # noqa: E402
from segmentation_tf.weights import from_canonical, load_weights, save_weights, to_canonical  # noqa: E402

__all__ = ["build_model", "list_models", "save_weights", "load_weights", "to_canonical", "from_canonical"]
