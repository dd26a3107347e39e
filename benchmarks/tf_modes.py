"""The Keras side of one measurement: eager, ``tf.function``, XLA and ``model.fit``'s train step."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmarks.cases import Case
from benchmarks.timing import Timing, time_call
from segmentation_tf.registry import build_model


def threads(n: int) -> str:
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return (f"tf intra-op {tf.config.threading.get_intra_op_parallelism_threads()}, "
            f"inter-op {tf.config.threading.get_inter_op_parallelism_threads()}")


def gemm(n: int, warmup: int, repeats: int, device: str) -> Timing:
    """``(n, n) @ (n, n)`` float32 in a ``tf.function``: 2 n^3 floating-point operations."""
    with tf.device("/GPU:0" if device == "cuda" else "/CPU:0"):
        a, b = (tf.random.normal((n, n)) for _ in range(2))
        matmul = tf.function(tf.matmul)
        return time_call(lambda: matmul(a, b).numpy(), warmup=warmup, repeats=repeats)


def _setup(case: Case):
    keras.utils.set_random_seed(0)
    model = build_model(case.arch, **case.options)
    channels, classes = model.spec.in_channels, model.spec.num_classes
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((case.batch, case.size, case.size, channels), dtype=np.float32))
    labels = rng.integers(0, max(classes, 2), (case.batch, case.size, case.size))
    if classes == 1:
        loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        y = tf.constant(labels[..., None].astype(np.float32))
    else:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        y = tf.constant(labels)
    optimizer = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
    return model, x, y, loss_fn, optimizer


def measure(case: Case, task: str, mode: str, warmup: int, repeats: int, device: str) -> Timing:
    """Time one ``task`` ("forward": inference mode; "train_step": forward, loss, gradient, SGD update)
    of ``case`` in ``mode``. Each call ends by fetching a result, which waits for the device."""
    with tf.device("/GPU:0" if device == "cuda" else "/CPU:0"):
        model, x, y, loss_fn, optimizer = _setup(case)
        if mode == "fit":
            if task != "train_step":
                raise ValueError("mode 'fit' times model.fit's train step; use it with task train_step")
            model.compile(optimizer=optimizer, loss=loss_fn, jit_compile=False)
            return time_call(lambda: model.train_on_batch(x, y), warmup=warmup, repeats=repeats)
        if task == "forward":
            def step():
                return model(x, training=False)
        else:
            def step():
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
                return loss
        if mode == "function":
            step = tf.function(step, jit_compile=False)
        elif mode == "xla":
            step = tf.function(step, jit_compile=True)
        elif mode != "eager":
            raise ValueError(f"unknown tf mode {mode!r}")
        return time_call(lambda: _wait(step()), warmup=warmup, repeats=repeats)


def _wait(result) -> float:
    """Fetch one element of ``result``: returns once the device has computed it (cheap, unlike
    copying a whole logits tensor to the host)."""
    return float(tf.reshape(result, [-1])[0])
