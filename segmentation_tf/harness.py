"""Parity trace, Keras side: run a model on numpy inputs and return numpy results.

Twin of ``segmentation_torch/harness.py``; the trace keys are documented in ``segparity.comparison.trace``.
Inputs and outputs are canonical: images ``(N, C, H, W)``, weights in ``segparity.weights.layout`` layout;
this module transposes to and from Keras's ``(N, H, W, C)`` at its edges.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from segmentation_tf.device import precision, resolve_device
from segmentation_tf.instance import DiscriminativeLoss
from segmentation_tf import losses as tf_losses
from segmentation_tf.optimizers import build_optimizer
from segmentation_tf.registry import build_model
from segmentation_tf.weights import from_canonical, tensor_refs, to_canonical
from segparity.comparison import kinks
from segparity.reference import losses as loss_reference
from segparity.weights.layout import permute_axes, randomize_for_parity
from segparity.networks.torchvision_segmentation import AUX_LOSS_WEIGHT
from segparity.comparison.trace import TraceSettings, instance_targets, network_losses, optimizer_steps, running_statistics

FRAMEWORK = "tf"


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def random_weights(spec, seed: int) -> dict[str, np.ndarray]:
    """Canonical weights from Keras's default initialisers (seeded), BN tensors and transposed-conv kernels randomised."""
    keras.utils.set_random_seed(seed)
    model = build_model(spec.name, **spec.options())
    return randomize_for_parity(to_canonical(model), spec, seed)


def _canonical(model, dtype: str) -> dict[str, np.ndarray]:
    """``to_canonical`` without its float32 cast, for float64 traces."""
    return {key: permute_axes(np.array(keras.ops.convert_to_numpy(v), dtype=dtype), axes, canon)
            for key, (v, axes, canon) in tensor_refs(model).items()}


def _nchw(t) -> np.ndarray:
    return np.transpose(keras.ops.convert_to_numpy(t), (0, 3, 1, 2))


def _logits(outputs):
    """The logits of a model's output: the output itself, the first of ``(logits, embedding)``, or ``"out"`` of
    torchvision's dict."""
    if isinstance(outputs, dict):
        return outputs["out"]
    return outputs[0] if isinstance(outputs, tuple) else outputs


def _network_loss(loss_fn, outputs, target):
    """``loss_fn`` of the logits, plus ``AUX_LOSS_WEIGHT`` times that of torchvision's ``"aux"`` output if any."""
    loss = loss_fn(target, _logits(outputs))
    if isinstance(outputs, dict) and "aux" in outputs:
        loss = loss + AUX_LOSS_WEIGHT * loss_fn(target, outputs["aux"])
    return loss


def compute_trace(spec, weights: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
                  settings: TraceSettings, device: str = "cpu", dtype: str = "float32", layers: str = "parity") -> dict:
    """Every quantity of ``segparity.comparison.trace`` for ``spec`` with ``weights`` on ``images (N, C, H, W)``.

    ``dtype="float64"`` runs everything in double precision (results are returned as float64). ``layers``: the
    model's flavour (``segparity.networks.layer_flavours``).
    """
    with tf.device(resolve_device(device)), precision(dtype):
        model = build_model(spec.name, **spec.options(), layers=layers)
        x = tf.constant(np.transpose(images, (0, 2, 3, 1)).astype(dtype))
        y = tf.constant(np.asarray(labels, dtype=np.int64))
        losses = {name: loss_reference.build(tf_losses, class_name, kwargs)
                  for name, (class_name, kwargs) in network_losses(spec.num_classes, settings).items()}
        trace: dict = {}

        from_canonical(model, weights)
        outputs = model(x, training=False)
        trace["logits_eval"] = _nchw(_logits(outputs))
        if isinstance(outputs, dict) and "aux" in outputs:
            trace["aux_eval"] = _nchw(outputs["aux"])
        if spec.embedding_dim:
            trace["embedding_eval"] = _nchw(outputs[1])

        for name, loss_fn in losses.items():
            from_canonical(model, weights)  # each training forward moves the BN running statistics
            refs = {k: v for k, v in tensor_refs(model).items() if v[0].trainable}
            with tf.GradientTape() as tape:
                tape.watch(x)
                outputs = model(x, training=True)
                logits = _logits(outputs)
                loss = _network_loss(loss_fn, outputs, y)
            grads = tape.gradient(loss, [x] + [ref[0] for ref in refs.values()])
            trace["logits_train"] = _nchw(logits)
            trace[f"loss_{name}"] = keras.ops.convert_to_numpy(loss)
            trace[f"grad_input_{name}"] = _nchw(grads[0])
            trace[f"grad_weights_{name}"] = {
                key: permute_axes(keras.ops.convert_to_numpy(g), axes, canon)
                for (key, (_, axes, canon)), g in zip(refs.items(), grads[1:])
            }
        trace["bn_running"] = running_statistics(_canonical(model, dtype))

        if spec.embedding_dim:
            from_canonical(model, weights)
            refs = {k: v for k, v in tensor_refs(model).items() if v[0].trainable}
            instances = tf.constant(instance_targets(labels, settings.ignore_index))
            with tf.GradientTape() as tape:
                loss = DiscriminativeLoss()(instances, model(x, training=True)[1])
            grads = tape.gradient(loss, [ref[0] for ref in refs.values()])
            trace["loss_discriminative"] = keras.ops.convert_to_numpy(loss)
            trace["grad_weights_discriminative"] = {
                key: permute_axes(keras.ops.convert_to_numpy(g), axes, canon)
                for (key, (_, axes, canon)), g in zip(refs.items(), grads)
            }

        for opt_name, kwargs in optimizer_steps(settings):
            from_canonical(model, weights)
            optimizer = build_optimizer(model, opt_name, **kwargs)
            variables = model.trainable_variables
            with tf.GradientTape() as tape:
                outputs = model(x, training=True)
                loss = _network_loss(losses["bce"], outputs, y) + _network_loss(losses["ce"], outputs, y)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            trace[f"weights_after_{opt_name}"] = _canonical(model, dtype)
    return trace


def loss_trace(losses: dict, target: np.ndarray, dtype: str = "float32") -> dict:
    """``loss_<name>`` and ``grad_logits_<name>`` (``segparity.comparison.trace``) of each ``name: (class_name, kwargs,
    input (N, C, H, W))`` (``segparity.reference.losses.report_inputs``) against ``target``, computed in ``dtype``."""
    trace = {}
    with precision(dtype):
        y = tf.constant(np.asarray(target))
        for name, (class_name, kwargs, inputs) in losses.items():
            x = tf.constant(np.transpose(inputs, (0, 2, 3, 1)).astype(dtype))
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = loss_reference.build(tf_losses, class_name, kwargs)(y, x)
            trace[f"loss_{name}"] = keras.ops.convert_to_numpy(loss)
            trace[f"grad_logits_{name}"] = _nchw(tape.gradient(loss, x))
    return trace


def count_parameters(spec) -> int:
    """Trainable scalars of the Keras model built from ``spec``."""
    model = build_model(spec.name, **spec.options())
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@contextlib.contextmanager
def _record_kink_inputs():
    """Records the input of every ReLU (ReLU6: shifted to both kinks) and max-pool the model calls, in call order,
    by wrapping the functions the models call (``keras.ops.relu``, ``relu6``, ``max_pool``, ``tf.nn.max_pool_with_argmax``);
    Keras has no function-level hook like torch's function modes."""
    record = {"relu": [], "pool": []}
    wrapped = [(keras.ops, "relu", "relu"), (keras.ops, "relu6", "relu6"), (keras.ops, "max_pool", "pool"),
               (tf.nn, "max_pool_with_argmax", "pool")]
    originals = [getattr(module, attribute) for module, attribute, _ in wrapped]

    def recording(function, kind):
        def call(x, *args, **kwargs):
            if kind == "relu6":  # kinks at 0 and 6 (hardswish and hardsigmoid: x + 3 at -3 and 3)
                record["relu"] += [_nchw(x), _nchw(x) - 6.0]
            else:
                record[kind].append(_nchw(x))
            return function(x, *args, **kwargs)
        return call

    for (module, attribute, kind), function in zip(wrapped, originals):
        setattr(module, attribute, recording(function, kind))
    try:
        yield record
    finally:
        for (module, attribute, _), function in zip(wrapped, originals):
            setattr(module, attribute, function)


def kink_margin(spec, weights: dict[str, np.ndarray], images: np.ndarray) -> float:
    """``segparity.comparison.kinks.kink_margin`` of a training-mode forward pass, run in float64 and float32."""
    records = {}
    for dtype in ("float64", "float32"):
        with precision(dtype), _record_kink_inputs() as record:
            model = from_canonical(build_model(spec.name, **spec.options()), weights)
            model(np.transpose(np.asarray(images, dtype=dtype), (0, 2, 3, 1)), training=True)
        records[dtype] = record
    exact, rounded = records["float64"], records["float32"]
    return kinks.kink_margin(list(zip(exact["relu"], rounded["relu"])), list(zip(exact["pool"], rounded["pool"])))
