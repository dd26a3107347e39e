"""``segparity train --framework tf --distributed``: ``tf.distribute`` strategies under Keras ``fit``.

Twin of ``segmentation_torch/distributed.py`` (``torchrun``, ``DistributedDataParallel``). One process per
host: ``MirroredStrategy`` over this host's GPUs (or over ``cpu_replicas`` logical CPU devices), or, when
``TF_CONFIG`` names a cluster (``segparity.training.distributed.tf_config_process``),
``MultiWorkerMirroredStrategy`` with one such process per worker. The network, optimiser and metrics are
built inside ``strategy.scope()`` (``segmentation_tf.train`` fits them through ``_Replicated``, which works
around Keras 3.15's multi-worker bugs); ``fit`` splits every global batch of the dataset over the replicas,
Keras scales each replica's loss by ``1 / replicas`` and sums the gradients (so the learning rate is the
single-process one), and only worker 0 (the chief) writes the run folder.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from segmentation_tf.data import make_loader as _epoch_batches
from segmentation_tf.layers import BatchNorm
from segmentation_tf.probe import _nested_layers
from segparity.data.dataset import ArrayDataset
from segparity.training.distributed import DistributedError, Process, tf_config_process


# One strategy per process and set-up: a second MirroredStrategy in the same process numbers its collectives from
# the same keys as the first, and TensorFlow's collective executor then refuses them ("Collective instance 100
# expected ... data_type 2 but got ... data_type 1") when the two runs' first reductions differ in dtype.
_STRATEGIES: dict[tuple, tuple[Process, tf.distribute.Strategy]] = {}


def start(device: str, cpu_replicas: int = 1) -> tuple[Process, tf.distribute.Strategy]:
    """This process and its strategy: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set (checked first),
    else ``MirroredStrategy`` over every GPU (``device="cuda"``) or over the CPU split into ``cpu_replicas`` logical
    devices (``tf.config.set_logical_device_configuration``: only before TensorFlow has started). A later call with
    the same arguments (a second run in one process) returns the same strategy."""
    if cpu_replicas < 1:
        raise DistributedError(f"cpu_replicas must be a positive integer, got {cpu_replicas!r}")
    key = (device, cpu_replicas, os.environ.get("TF_CONFIG"))
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _new_strategy(device, cpu_replicas)
    return _STRATEGIES[key]


def _new_strategy(device: str, cpu_replicas: int) -> tuple[Process, tf.distribute.Strategy]:
    text = os.environ.get("TF_CONFIG")
    if text:
        process = tf_config_process(text)
        if cpu_replicas != 1:
            raise DistributedError(f"cpu_replicas {cpu_replicas} with TF_CONFIG: a MultiWorkerMirroredStrategy worker "
                                   "is one replica on the CPU; start more workers instead")
        return process, tf.distribute.MultiWorkerMirroredStrategy()
    if device == "cuda":
        gpus = tf.config.list_logical_devices("GPU")
        if not gpus:
            raise DistributedError("--device cuda: TensorFlow sees no GPU "
                                   "(tf.config.list_logical_devices('GPU') is empty)")
        return Process(0, 1, 0), tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError:  # TensorFlow has started: its devices are fixed
            split = len(tf.config.list_logical_devices("CPU"))
            if split != cpu_replicas:
                raise DistributedError(f"cpu_replicas {cpu_replicas}: TensorFlow has already started with {split} CPU "
                                       f"device(s); split the CPU before anything else runs TensorFlow") from None
    cpus = tf.config.list_logical_devices("CPU")
    return Process(0, 1, 0), tf.distribute.MirroredStrategy([cpu.name for cpu in cpus])


def synchronize_batchnorm(model: keras.Model) -> int:
    """Make every segparity ``BatchNorm`` of ``model`` use the batch statistics of all replicas together in
    training mode (``BatchNorm(synchronized=True)``); returns how many there are. A ``layers="stock"`` model
    (``keras.layers.BatchNormalization``, whose ``synchronized`` is fixed when it is built) is refused with the
    reason."""
    stock = [layer for layer in _nested_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if stock:
        raise ValueError(f"synchronize_batchnorm: {len(stock)} BatchNorm layers are keras.layers.BatchNormalization (a "
                         "model built with layers='stock'); synchronised statistics need segparity's BatchNorm: build "
                         "it with layers='parity'")
    layers = [layer for layer in _nested_layers(model) if isinstance(layer, BatchNorm)]

    for layer in layers:
        layer.synchronized = True
    return len(layers)


def make_loader(data: ArrayDataset, batch_size: int, epoch: int = 0, shuffle: bool = True, instances: bool = False,
                process: Process | None = None) -> tf.data.Dataset:
    """One epoch in *global* batches of ``batch_size``, as ``segmentation_tf.data.make_loader`` makes them
    (``images (B, H, W, C)``, ``masks (B, H, W)``), for a strategy to split. ``fit`` under ``MirroredStrategy`` gives
    replica ``r`` of ``R`` the ``r``-th ``batch_size / R`` samples of each batch; under
    ``MultiWorkerMirroredStrategy`` every worker builds the same dataset, and sharding by data (set here; tf.data's
    default looks for files) gives each worker its replicas' parts. Either way the replicas' ``k``-th batches
    together are the single-process run's ``k``-th batch. ``process`` is the torch twin's (there each process loads
    only its part); here every worker reads the whole dataset."""
    dataset = _epoch_batches(data, batch_size, epoch, shuffle=shuffle, instances=instances)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
