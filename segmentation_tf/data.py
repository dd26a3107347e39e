"""``segparity.data`` datasets as a ``tf.data.Dataset``: ``(N, H, W, C)`` float32 images, ``(N, H, W)`` int64 masks.

Twin of ``segmentation_torch/data.py``. The pairs come from ``ArrayDataset.item`` and the order from
``segparity.data.dataset.batch_indices``, so both frameworks see the same batches in the same order.
"""

from __future__ import annotations

import tensorflow as tf

from segparity.data.dataset import ArrayDataset, batch_indices


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
    Batch ``b`` is made by ``data.batch`` inside ``tf.numpy_function``, mapped over ``range(batches)`` in
    order. Not ``Dataset.from_generator``: building that op calls ``mallopt(M_MMAP_THRESHOLD, 128 KiB)``
    for the whole process (TensorFlow's ``ApplyPython311MemoryPatch``), after which every torch tensor of
    128 KiB or more is a fresh ``mmap`` and torch trained up to 2.8x slower in that process (pitfall
    ``tf_from_generator_mallopt``).
    """
    batches = batch_indices(len(data), batch_size, epoch, data.seed, shuffle, drop_last)
    signature = _signature(data, instances)
    flat = tf.nest.flatten(signature)

    def load(b):
        if instances:
            images, masks, ids = data.batch(batches[int(b)], epoch, instances=True)
            return images, masks, ids
        return data.batch(batches[int(b)], epoch)

    def to_tensors(b):
        arrays = tf.numpy_function(load, [b], [spec.dtype for spec in flat], stateful=False)
        arrays = [tf.ensure_shape(a, spec.shape) for a, spec in zip(arrays, flat)]
        return tf.nest.pack_sequence_as(signature, arrays)

    dataset = tf.data.Dataset.range(len(batches)).map(to_tensors)  # sequential: batches in order
    # a known length lets Keras fit/evaluate stop without reading past the end
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(1)
