"""Started by tests/test_distributed.py in a fresh process (TensorFlow's CPU can be split into logical devices
only before it starts): ``python tests/distributed_tf_worker.py CONFIG.json OUT`` trains the configuration with
``--distributed`` under ``MirroredStrategy`` over two logical CPU devices with synchronised BatchNorm
(``OUT/sync``), and one epoch of it without (``OUT/plain``); then measures pitfall ``tf_distribute_scalar_loss``
(``OUT/pitfall.json``).

With ``TF_CONFIG`` set, one process per worker (``MultiWorkerMirroredStrategy``):
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


def main(config_file: str, out: str) -> None:
    stored = json.loads(open(config_file).read())
    config = TrainConfig(**{**stored, "split": tuple(stored["split"])})
    for name, changes in (("sync", dict(sync_batchnorm=True)), ("plain", dict(sync_batchnorm=False, epochs=1))):
        train(dataclasses.replace(config, framework="tf", **changes), f"{out}/{name}", progress=False,
              distributed=True, cpu_replicas=2)
    Path(out, "pitfall.json").write_text(json.dumps(scalar_loss_pitfall()))


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
    stored = json.loads(open(config_file).read())
    config = TrainConfig(**{**stored, "split": tuple(stored["split"])})
    train(dataclasses.replace(config, framework="tf"), out, progress=False, distributed=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--multi-worker"]:
        multi_worker_fit()
    elif sys.argv[1] == "--multi-worker":
        multi_worker_train(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
