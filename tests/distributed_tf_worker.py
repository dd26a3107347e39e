"""Started by tests/test_distributed.py in a fresh process (TensorFlow's CPU can be split into logical devices
only before it starts), ``MirroredStrategy`` over two logical CPU devices:

- ``python tests/distributed_tf_worker.py CONFIG.json OUT``: trains the configuration with ``--distributed`` and
  synchronised BatchNorm (``OUT/sync``);
- ``python tests/distributed_tf_worker.py --plain CONFIG.json OUT`` (slow set): one epoch with plain BatchNorm
  (``OUT/plain``), pitfall ``tf_distribute_scalar_loss`` measured (``OUT/pitfall.json``), and the refusal of the
  instance task on two replicas (``OUT/instance_refusal.txt``).

With ``TF_CONFIG`` set, one process per worker (``MultiWorkerMirroredStrategy``, slow set):
``python tests/distributed_tf_worker.py --multi-worker`` runs the smallest plain Keras ``fit``, which Keras 3.15
cannot run (keras-team/keras#20585); ``python tests/distributed_tf_worker.py --multi-worker CONFIG.json OUT`` trains
the configuration with ``segmentation_tf.train.train(..., distributed=True)``, which can."""

import contextlib
import dataclasses
import json
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from segmentation_tf.distributed import start
from segmentation_tf.losses import _scaled_for_replicas
from segmentation_tf.train import train
from segparity.training.config import TrainConfig


def _stored(config_file: str) -> TrainConfig:
    stored = json.loads(open(config_file).read())
    return dataclasses.replace(TrainConfig(**{**stored, "split": tuple(stored["split"])}), framework="tf")


def main(config_file: str, out: str) -> None:
    """The default suite's: the configuration with synchronised BatchNorm, in ``OUT/sync``."""
    train(dataclasses.replace(_stored(config_file), sync_batchnorm=True), f"{out}/sync", progress=False,
          distributed=True, cpu_replicas=2)


def without_synchronisation(config_file: str, out: str) -> None:
    """The slow set's: one epoch of the configuration with plain BatchNorm (``OUT/plain``), pitfall
    ``tf_distribute_scalar_loss`` measured (``OUT/pitfall.json``), and the instance task's refusal."""
    train(dataclasses.replace(_stored(config_file), sync_batchnorm=False, epochs=1), f"{out}/plain", progress=False,
          distributed=True, cpu_replicas=2)
    Path(out, "pitfall.json").write_text(json.dumps(scalar_loss_pitfall()))
    try:  # the instance task is refused on several Keras replicas, before anything is written
        train(dataclasses.replace(_stored(config_file), task="instance"), f"{out}/instance", progress=False,
              distributed=True, cpu_replicas=2)
        refusal = ""
    except ValueError as error:
        refusal = str(error)
    Path(out, "instance_refusal.txt").write_text(refusal)


class _ScalarMeanSquare(keras.losses.Loss):
    """The naive port: a custom loss whose ``call`` returns the batch mean itself, a scalar."""

    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_pred - y_true))


class _ScaledMeanSquare(_ScalarMeanSquare):
    """The fix segparity's losses use: the scalar divided by the replicas in sync."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        return _scaled_for_replicas(super().__call__(y_true, y_pred, sample_weight))


def scalar_loss_pitfall() -> dict:
    """One SGD step (lr 0.1) of a Dense layer on 8 samples, single-process and under the 2-replica MirroredStrategy
    with each loss; the largest change of the weights' update against the single-process update."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    kernel = rng.normal(size=(4, 1)).astype("float32")

    def step(loss, strategy=None):
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
            model.layers[0].kernel.assign(kernel)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=False)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return ops.convert_to_numpy(model.layers[0].kernel) - kernel

    single = step(_ScalarMeanSquare())
    _, strategy = start("cpu", 2)
    return {name: float(np.abs(step(loss, strategy) - single).max() / np.abs(single).max()) for name, loss in (
        ("naive", _ScalarMeanSquare()), ("fixed", _ScaledMeanSquare()), ("keras", keras.losses.MeanSquaredError()))}


def multi_worker_fit() -> None:
    """One epoch of a Dense layer on 8 samples under ``MultiWorkerMirroredStrategy``, as TensorFlow's multi-worker
    tutorial trains; raises whatever Keras raises."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 1)).astype("float32"), batch_size=8,
              epochs=1, verbose=0)
    print("multi-worker fit finished")


def multi_worker_train(config_file: str, out: str) -> None:
    train(_stored(config_file), out, progress=False, distributed=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--multi-worker"]:
        multi_worker_fit()
    elif sys.argv[1] == "--multi-worker":
        multi_worker_train(*sys.argv[2:])
    elif sys.argv[1] == "--plain":
        without_synchronisation(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
