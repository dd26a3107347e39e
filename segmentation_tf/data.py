"""``shared.data`` datasets as a ``tf.data.Dataset``: ``(N, H, W, C)`` float32 images, ``(N, H, W)`` int64 masks.

Twin of ``segmentation_torch/data.py``. The pairs come from ``ArrayDataset.item`` and the order from
``shared.data.dataset.batch_indices``, so both frameworks see the same batches in the same order.
"""

from __future__ import annotations

import tensorflow as tf

from shared.data.dataset import ArrayDataset, batch_indices


def _signature(data: ArrayDataset, instances: bool = False) -> tuple:
    """Batch shapes with the batch size left open (the last batch may be shorter)."""
    height, width = data.item_size()
    channels = data.images.shape[-1]
    images = tf.TensorSpec((None, height, width, channels), tf.float32)
    masks = tf.TensorSpec((None, height, width), tf.int64)
    return (images, (masks, tf.TensorSpec((None, height, width), tf.int64))) if instances else (images, masks)


def make_loader(data: ArrayDataset, batch_size: int, epoch: int = 0, shuffle: bool = True,
                drop_last: bool = False, instances: bool = False) -> tf.data.Dataset:
    """One epoch of ``data`` in batches: ``images (B, H, W, C)`` float32, ``masks (B, H, W)`` int64; with
    ``instances``, ``images, (masks, instance ids (B, H, W) int64)``, the targets of a two-headed model
    (Keras ``fit`` pairs them with the model's two outputs).

    The order is a permutation drawn from ``(data.seed, epoch)`` when ``shuffle``, else the stored order.
    """
    batches = batch_indices(len(data), batch_size, epoch, data.seed, shuffle, drop_last)

    def generate():
        for indices in batches:
            if instances:
                images, masks, ids = data.batch(indices, epoch, instances=True)
                yield images, (masks, ids)
            else:
                yield data.batch(indices, epoch)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=_signature(data, instances))
    # a known length lets Keras fit/evaluate stop without reading past the end
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(1)
