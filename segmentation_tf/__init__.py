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


_ensure_tensorflow_backend()

from segmentation_tf.registry import build_model, list_models  # noqa: E402
from segmentation_tf.weights import from_canonical, load_weights, save_weights, to_canonical  # noqa: E402

__all__ = ["build_model", "list_models", "save_weights", "load_weights", "to_canonical", "from_canonical"]
