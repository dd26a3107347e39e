"""The Keras side of one measurement: eager, ``tf.function``, XLA and ``model.fit``'s train step, in
fp32 or under a mixed dtype policy (``mixed_bfloat16``, ``mixed_float16``)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmarks.cases import Case
from benchmarks.timing import Timing, time_call
from segmentation_tf.registry import build_model
from segparity.networks.specs import TORCHVISION_SPECS

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}

_PINNED = False


def threads(n: int) -> str:
    """Pin intra-op threads to ``n`` and inter-op to 1, once per process (the setters refuse a second
    call after work has run); returns what is in force."""
    global _PINNED
    if not _PINNED:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        _PINNED = True
    return (f"tf intra-op {tf.config.threading.get_intra_op_parallelism_threads()}, "
            f"inter-op {tf.config.threading.get_inter_op_parallelism_threads()}")


def check_device(device: str) -> str:
    """The device's name; a one-line error when ``device`` is "cuda" and TensorFlow sees no GPU."""
    if device == "cpu":
        return "cpu"
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        raise RuntimeError(f"--device cuda: tensorflow {tf.__version__} sees no GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)


def _device(device: str) -> str:
    return "/GPU:0" if device == "cuda" else "/CPU:0"


def gemm(n: int, precision: str, warmup: int, repeats: int, device: str) -> Timing:
    """``(n, n) @ (n, n)`` in ``precision`` in a ``tf.function``: 2 n^3 floating-point operations."""
    with tf.device(_device(device)):
        a, b = (tf.random.normal((n, n), dtype=DTYPES[precision]) for _ in range(2))
        matmul = tf.function(tf.matmul)
        reset_device_peak(device)
        return time_call(lambda: _wait(matmul(a, b)), warmup=warmup, repeats=repeats)


def reset_device_peak(device: str) -> None:
    if device == "cuda":
        tf.config.experimental.reset_memory_stats("GPU:0")


def device_peak_mib(device: str) -> float | None:
    """TensorFlow's GPU allocator peak since the last reset, MiB; None on the CPU."""
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if device == "cuda" else None


class _Out(keras.Model):
    """torchvision's segmentation models return a dict; ``fit`` and the loss train its ``"out"``."""

    def __init__(self, network: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.network = network

    def call(self, x, training=False):
        return self.network(x, training=training)["out"]


def _setup(case: Case, precision: str):
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(POLICIES[precision])  # layers compute in bf16/fp16, variables stay fp32
    model = build_model(case.arch, layers=case.layers, **case.options)
    if model.spec.name in TORCHVISION_SPECS:
        model = _Out(model, name="out")
        model.spec = model.network.spec
    channels, classes = model.spec.in_channels, model.spec.num_classes
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((case.batch, case.size, case.size, channels), dtype=np.float32))
    out = model.spec.output_size(case.size)  # the labels of what the network outputs (paper U-Net: 572 -> 388)
    labels = rng.integers(0, max(classes, 2), (case.batch, out, out))
    if classes == 1:
        loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        y = tf.constant(labels[..., None].astype(np.float32))
    else:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        y = tf.constant(labels)
    optimizer = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
    if precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return model, x, y, loss_fn, optimizer


def measure(case: Case, task: str, mode: str, precision: str, warmup: int, repeats: int, device: str) -> Timing:
    """Time ``step_function(case, task, mode, precision, device)``, the device's peak memory reset first."""
    with tf.device(_device(device)):
        step = step_function(case, task, mode, precision, device)
        reset_device_peak(device)
        return time_call(step, warmup=warmup, repeats=repeats)


def step_function(case: Case, task: str, mode: str, precision: str, device: str):
    """One ``task`` ("forward": inference mode; "train_step": forward, loss, gradient, SGD update) of
    ``case`` in ``mode``, as a callable that ends by fetching a result (which waits for the device).
    ``precision`` "bf16"/"fp16" builds the model under Keras's mixed dtype policy (the loss is computed
    in fp32; fp16 training wraps the optimiser in a ``LossScaleOptimizer``)."""
    with tf.device(_device(device)):
        model, x, y, loss_fn, optimizer = _setup(case, precision)
    if mode == "fit":
        if task != "train_step":
            raise ValueError("mode 'fit' times model.fit's train step; use it with task train_step")
        model.compile(optimizer=optimizer, loss=loss_fn, jit_compile=False)
        return lambda: model.train_on_batch(x, y)
    if task == "forward":
        def step():
            return model(x, training=False)
    else:
        def step():
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
                scaled = optimizer.scale_loss(loss)  # identity unless a LossScaleOptimizer (fp16)
            optimizer.apply_gradients(zip(tape.gradient(scaled, model.trainable_variables),
                                          model.trainable_variables))
            return loss
    if mode == "function":
        step = tf.function(step, jit_compile=False)
    elif mode == "xla":
        step = tf.function(step, jit_compile=True)
    elif mode != "eager":
        raise ValueError(f"unknown tf mode {mode!r}")
    return lambda: _wait(step())


def _wait(result) -> float:
    """Fetch one element of ``result``: returns once the device has computed it (cheap, unlike
    copying a whole logits tensor to the host)."""
    return float(tf.reshape(result, [-1])[0])
