"""Layer-by-layer probing of a Keras model: what ``segparity diff`` and the parity harness
(``shared/parity/layerdiff.py``) need from Keras.

Twin of ``segmentation_torch/probe.py``. Activations go in and come out as numpy arrays in Keras's
own layout (channels-last, ``(N, H, W, C)``): which axes a Keras tensor has is the port's business,
so ``segparity.parity.layerdiff`` moves them to torch's layout, once, by the rule it documents. Layer weights
are in ``segparity.weights.layout`` axes.
A layer is named by an attribute path (``decoder.0.conv1``, how segparity's models nest their
layers, each also *named* so) or, failing that, by its Keras name (``model.get_layer(name)``, how a
functional model is addressed).
"""

from __future__ import annotations

import contextlib
import os

import keras
import numpy as np
import tensorflow as tf

from segmentation_tf.layers import BatchNorm
from segmentation_tf.weights import KERAS_TENSORS
from segparity.weights.layout import CANONICAL_AXES, permute_axes, reconcile_bias
from segparity.comparison.records import LayerCall

FRAMEWORK = "tf"

# Keras layer class -> canonical kind (tensors and axes: ``segmentation_tf.weights.KERAS_TENSORS``);
# Conv2DTranspose is not a Conv2D subclass, segparity's BatchNorm is not a BatchNormalization one
LAYER_KINDS = ((keras.layers.Conv2DTranspose, "conv_transpose2d"), (keras.layers.DepthwiseConv2D, "depthwise_conv2d"),
               (keras.layers.Conv2D, "conv2d"),
               (keras.layers.BatchNormalization, "batch_norm"), (BatchNorm, "batch_norm"),
               (keras.layers.Dense, "linear"))


def is_model(fn) -> bool:
    """Whether ``fn`` is a model whose layers can be probed (a Keras layer or model)."""
    return isinstance(fn, keras.layers.Layer)


def find_layer(model: keras.Model, path: str) -> keras.layers.Layer:
    """The layer at the attribute path ``path``, else the layer named ``path``; a ``KeyError`` naming
    the path if there is neither."""
    obj = model
    try:
        for part in path.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    except (AttributeError, IndexError, TypeError):
        obj = None
    if isinstance(obj, keras.layers.Layer):
        return obj
    try:
        return model.get_layer(path)
    except ValueError:
        raise KeyError(f"Keras model {model.name!r} has no layer {path!r}") from None


def _nested_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer inside ``model``, depth first (the model itself excluded).

    Keras 3 has no public list of the sublayers of a plain ``keras.layers.Layer`` (``Model.layers`` is public
    but one level deep, and only for models), so this is the one place the probe uses a private Keras method:
    ``Layer._flatten_layers``, the one Keras itself walks its layers with. Pinned by
    ``tests/test_layerdiff.py::test_keras_private_layer_walk_still_finds_every_layer`` (keras 3.15.1), so
    an upgrade that changes it fails there by name, not silently in a diff.
    """
    return list(model._flatten_layers(include_self=False, recursive=True))


def _has_own_variables(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` has variables of its own (not only its sublayers'): the public
    ``save_own_variables`` writes exactly those."""
    store: dict = {}
    layer.save_own_variables(store)
    return bool(store)


def layer_paths(model: keras.Model) -> list[str]:
    """The name of every layer inside ``model``, depth first (the model itself excluded)."""
    return [layer.name for layer in _nested_layers(model)]


def weighted_paths(model: keras.Model) -> list[str]:
    """The name of every layer inside ``model`` with variables of its own, depth first."""
    return [layer.name for layer in _nested_layers(model) if _has_own_variables(layer)]


def layer_kind(model: keras.Model, path: str) -> str:
    """The class name of the layer at ``path`` (for reports)."""
    return type(find_layer(model, path)).__name__


def known_pitfall(model: keras.Model, path: str) -> str:
    """The name of a pitfall (docs/pitfalls.md) the layer at ``path`` is exposed to as it runs now, or "".

    - ``tf_onednn_strided_pointwise_weight_grad``: a stock ``Conv2D`` with a 1x1 kernel at stride > 1 and
      TensorFlow's oneDNN kernels on (the default on x86-64): its weight gradient can be wrong, or abort the
      process, on small inputs (segparity's own layers compute it as a strided slice and a stride-1 conv);
    - ``tf32_on_gpu``: a convolution or dense layer while TensorFlow allows TF32 and sees a GPU.
    """
    layer = find_layer(model, path)
    if type(layer) is keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1) and max(layer.strides) > 1 \
            and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0":
        return "tf_onednn_strided_pointwise_weight_grad"
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense)) \
            and tf.config.experimental.tensor_float_32_execution_enabled() and tf.config.list_physical_devices("GPU"):
        return "tf32_on_gpu"
    return ""


def to_framework(array: np.ndarray) -> tf.Tensor:
    """A numpy array as a TensorFlow tensor (same axes)."""
    return tf.convert_to_tensor(np.ascontiguousarray(array))


def from_framework(value):
    """A tensor (or a tuple/list/dict of them) as numpy (same axes); anything else unchanged."""
    if isinstance(value, (tf.Tensor, tf.Variable)) or keras.ops.is_tensor(value):
        return keras.ops.convert_to_numpy(value)
    if isinstance(value, dict):
        return {key: from_framework(v) for key, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [from_framework(v) for v in value]
    return value


def _to_framework_args(value):
    if isinstance(value, np.ndarray):
        return to_framework(value)
    if isinstance(value, dict):
        return {key: _to_framework_args(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_to_framework_args(v) for v in value]
    return value


@contextlib.contextmanager
def _state_kept(layer: keras.layers.Layer):
    """Run a block and put every variable of the layer back afterwards (a training-mode call moves
    BatchNorm's moving statistics)."""
    saved = [(v, keras.ops.convert_to_numpy(v)) for v in layer.variables]
    try:
        yield
    finally:
        for v, value in saved:
            v.assign(value)


def run(fn, inputs: list[np.ndarray], training: bool = False):
    """``fn(*inputs)`` (a Keras model/layer, called with ``training``, or any TensorFlow callable) on
    numpy inputs; the output as numpy. A Keras layer is left as it was."""
    args = [to_framework(x) for x in inputs]
    if not isinstance(fn, keras.layers.Layer):
        return from_framework(fn(*args))
    with _state_kept(fn):
        return from_framework(fn(*args, training=training))


def record(model: keras.Model, inputs: list[np.ndarray], paths: list[str], training: bool = False,
           dtype: str | None = None) -> tuple[object, list[LayerCall]]:
    """Run ``model`` once, eagerly, on numpy ``inputs``; return its output and, in the order the calls
    finish, every call of a layer in ``paths``: its positional arguments and its output (numpy).

    Each layer's ``call`` is wrapped for the run (Keras's ``__call__`` looks ``call`` up on the
    instance) and restored afterwards, as are the model's variables. ``dtype`` must be None: a built
    Keras model keeps the dtype of its variables (build it under
    ``segmentation_tf.device.precision("float64")`` for a float64 run).
    """
    if dtype is not None:
        raise ValueError(f"dtype={dtype!r}: a built Keras model cannot be recast; build it in that dtype "
                         "(segmentation_tf.device.precision) and pass dtype=None")
    calls: list[LayerCall] = []
    wrapped = []
    for path in paths:
        layer = find_layer(model, path)
        original = layer.call

        def recording_call(*args, _path=path, _original=original, **kwargs):
            output = _original(*args, **kwargs)
            calls.append(LayerCall(_path, from_framework(list(args)), from_framework(output)))
            return output

        object.__setattr__(layer, "call", recording_call)
        wrapped.append(layer)
    try:
        output = run(model, inputs, training)
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")  # the class's own ``call`` again
    return output, calls


def run_layer(model: keras.Model, path: str, args: list, training: bool = False):
    """The layer at ``path`` alone, called on numpy ``args``; its output, numpy."""
    layer = find_layer(model, path)
    with _state_kept(layer):
        return from_framework(layer(*[_to_framework_args(a) for a in args], training=training))


def _kind(layer: keras.layers.Layer, path: str) -> tuple[str, dict]:
    for cls, kind in LAYER_KINDS:
        if isinstance(layer, cls):
            return kind, KERAS_TENSORS[kind]
    known = ", ".join(cls.__name__ for cls, _ in LAYER_KINDS)
    raise TypeError(f"layer {path!r} ({type(layer).__name__}) has weights but no canonical layout (known: {known})")


def get_layer_weights(model: keras.Model, path: str) -> tuple[str | None, dict[str, np.ndarray]]:
    """``(kind, canonical tensors)`` of the layer at ``path`` (``segparity.weights.layout`` axes, float32);
    ``(None, {})`` for a layer without variables of its own (ReLU, pooling, a container)."""
    layer = find_layer(model, path)
    if not _has_own_variables(layer):  # its own, not its sublayers'
        return None, {}
    kind, tensors = _kind(layer, path)
    out = {}
    for name, (attribute, axes) in tensors.items():
        value = getattr(layer, attribute, None)
        if value is not None:
            array = np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float32)
            out[name] = permute_axes(array, axes, CANONICAL_AXES[kind][name])
    return kind, out


def set_layer_weights(model: keras.Model, path: str, kind: str, tensors: dict[str, np.ndarray]) -> None:
    """Copy canonical ``tensors`` of a ``kind`` layer into the layer at ``path``; every name and shape
    is checked first, and a mismatch names the layer and the tensor. A missing bias is a zero bias
    (``segparity.weights.layout.reconcile_bias``)."""
    layer = find_layer(model, path)
    own_kind, names = _kind(layer, path)
    if own_kind != kind:
        raise ValueError(f"layer {path!r} is a {own_kind}, the tensors are of a {kind}")
    targets = {name: getattr(layer, attribute, None) for name, (attribute, _) in names.items()}
    targets = {name: target for name, target in targets.items() if target is not None}
    tensors, zero_bias = reconcile_bias(path, kind, set(targets), tensors)
    if set(targets) - ({"bias"} if zero_bias else set()) != set(tensors):
        raise ValueError(f"layer {path!r}: expected tensors {sorted(targets)}, got {sorted(tensors)}")
    if zero_bias:
        bias = targets.pop("bias")
        bias.assign(np.zeros(tuple(bias.shape), np.float32))
    for name, target in targets.items():
        value = permute_axes(np.asarray(tensors[name], dtype=np.float32), CANONICAL_AXES[kind][name], names[name][1])
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"layer {path!r} tensor {name!r}: Keras expects {tuple(target.shape)}, "
                             f"got {value.shape} after permuting from canonical {CANONICAL_AXES[kind][name]}")
        target.assign(value)
