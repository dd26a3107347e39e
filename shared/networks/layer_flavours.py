"""The two flavours of every network's layers, a ``build_model`` option in both frameworks (``layers=``).

- ``"parity"`` (the default): segparity's exact layers. BatchNorm is ``segparity``'s own in both frameworks
  (``segmentation_torch.layers.BatchNorm``, ``segmentation_tf.layers.BatchNorm``): batch statistics summed one
  type wider (float64 for float32 input), the running variance updated as torch does, synchronisable over
  processes and replicas.
- ``"stock"``: each framework's own BatchNorm as an idiomatic user writes it: ``torch.nn.BatchNorm2d`` and
  ``keras.layers.BatchNormalization`` (float32 statistics, the running variance updated with the biased batch
  variance, TensorFlow's composed kernels). Pooling and up-sampling are each framework's own ops in both
  flavours already (``F.max_pool2d``/``F.interpolate``; ``keras.ops.max_pool``/``tf.image.resize``, which is
  what ``keras.layers.MaxPooling2D`` and ``keras.layers.UpSampling2D(interpolation="bilinear")`` run), and so
  are convolutions (Keras ``Conv2D`` with torch's padding: a stock ``padding="same"`` would be another network).

Both flavours have the same weights under the same names, so one canonical checkpoint loads into either.
"""

from __future__ import annotations

LAYER_FLAVOURS = ("parity", "stock")


def check_layers(layers: str) -> str:
    """``layers`` if it names a flavour, else a ``ValueError`` naming the argument and the flavours."""
    if layers not in LAYER_FLAVOURS:
        raise ValueError(f"layers={layers!r}: expected one of {', '.join(map(repr, LAYER_FLAVOURS))}")
    return layers
