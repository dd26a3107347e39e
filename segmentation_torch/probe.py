"""Layer-by-layer probing of a PyTorch model: what ``segparity diff`` and the parity harness
(``shared/parity/layerdiff.py``) need from torch.

Twin of ``segmentation_tf/probe.py``. Activations go in and come out as numpy arrays in torch's own
layout (channels-first, ``(N, C, H, W)``), which is also the layout ``segparity.parity.layerdiff`` compares
in. Layer weights are in ``segparity.weights.layout`` axes. A layer is named by its torch attribute path
(``decoder.0.conv1``, as ``model.get_submodule`` takes it).
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch import nn

from segmentation_torch.weights import TORCH_TENSORS
from segparity.weights.layout import CANONICAL_AXES, permute_axes, reconcile_bias
from segparity.comparison.records import LayerCall

FRAMEWORK = "torch"

# torch layer class -> canonical kind (tensors and axes: ``segmentation_torch.weights.TORCH_TENSORS``)
LAYER_KINDS = ((nn.Conv2d, "conv2d"), (nn.ConvTranspose2d, "conv_transpose2d"), (nn.BatchNorm2d, "batch_norm"),
               (nn.Linear, "linear"))


def is_model(fn) -> bool:
    """Whether ``fn`` is a model whose layers can be probed (a ``torch.nn.Module``)."""
    return isinstance(fn, nn.Module)


def find_layer(model: nn.Module, path: str) -> nn.Module:
    """The submodule at the attribute path ``path``; a ``KeyError`` naming the path if there is none."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise KeyError(f"torch model {type(model).__name__} has no layer {path!r}") from None


def layer_paths(model: nn.Module) -> list[str]:
    """Every submodule's attribute path, in registration order (the model itself excluded)."""
    return [path for path, _ in model.named_modules() if path]


def weighted_paths(model: nn.Module) -> list[str]:
    """The attribute path of every submodule with parameters or buffers of its own, in registration order."""
    return [path for path, layer in model.named_modules()
            if path and (list(layer.parameters(recurse=False)) or list(layer.buffers(recurse=False)))]


def layer_kind(model: nn.Module, path: str) -> str:
    """The class name of the layer at ``path`` (for reports)."""
    return type(find_layer(model, path)).__name__


def known_pitfall(model: nn.Module, path: str) -> str:
    """The name of a pitfall (docs/pitfalls.md) the layer at ``path`` is exposed to as it runs now, or "".

    - ``tf32_on_gpu``: a convolution or linear layer on a CUDA device while torch allows TF32 there
      (``torch.backends.cudnn.allow_tf32`` for convolutions, ``torch.backends.cuda.matmul.allow_tf32`` for linear).
    """
    layer = find_layer(model, path)
    convolution = isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))
    if convolution or isinstance(layer, nn.Linear):
        on_cuda = any(p.is_cuda for p in layer.parameters(recurse=False))
        allowed = torch.backends.cudnn.allow_tf32 if convolution else torch.backends.cuda.matmul.allow_tf32
        if on_cuda and allowed:
            return "tf32_on_gpu"
    return ""


def to_framework(array: np.ndarray) -> torch.Tensor:
    """A numpy array as a torch tensor (same axes)."""
    return torch.from_numpy(np.ascontiguousarray(array))


def from_framework(value):
    """A torch tensor (or a tuple/list/dict of them) as a numpy copy (same axes); anything else unchanged.

    A copy, not a view: a layer's recorded output must not change when a later in-place op (torchvision's
    ``ReLU(inplace=True)`` after a BatchNorm) writes into the same memory."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
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
def _state_kept(module: nn.Module):
    """Run a block and put the module's mode and every parameter and buffer back afterwards (a
    training-mode forward moves BatchNorm's running statistics)."""
    state = {key: value.clone() for key, value in module.state_dict().items()}
    modes = {name: m.training for name, m in module.named_modules()}
    try:
        yield
    finally:
        module.load_state_dict(state)
        for name, m in module.named_modules():
            m.train(modes[name])


def run(fn, inputs: list[np.ndarray], training: bool = False):
    """``fn(*inputs)`` (a module or any torch callable) on numpy inputs, without gradients; the
    output as numpy. A module runs in ``train(training)`` mode and is left as it was."""
    args = [to_framework(x) for x in inputs]
    if not isinstance(fn, nn.Module):
        with torch.no_grad():
            return from_framework(fn(*args))
    with _state_kept(fn), torch.no_grad():
        fn.train(training)
        return from_framework(fn(*args))


def record(model: nn.Module, inputs: list[np.ndarray], paths: list[str], training: bool = False,
           dtype: str | None = None) -> tuple[object, list[LayerCall]]:
    """Run ``model`` once on numpy ``inputs``; return its output and, in the order the calls
    finish, every call of a layer in ``paths``: its positional arguments and its output (numpy).
    The model's weights, running statistics and mode are left as they were.

    ``dtype="float64"`` runs a float64 copy of the model on float64 inputs (the model is untouched):
    the reference that tells rounding from a port error.
    """
    if dtype is not None:
        model = copy.deepcopy(model).to(getattr(torch, dtype))
        inputs = [np.asarray(x, dtype=dtype) if np.issubdtype(np.asarray(x).dtype, np.floating) else x for x in inputs]
    calls: list[LayerCall] = []
    handles = []
    for path in paths:
        def hook(module, args, output, path=path):
            calls.append(LayerCall(path, from_framework(list(args)), from_framework(output)))
        handles.append(find_layer(model, path).register_forward_hook(hook))
    try:
        output = run(model, inputs, training)
    finally:
        for handle in handles:
            handle.remove()
    return output, calls


def run_layer(model: nn.Module, path: str, args: list, training: bool = False):
    """The layer at ``path`` alone, called on numpy ``args``; its output, numpy."""
    layer = find_layer(model, path)
    with _state_kept(layer), torch.no_grad():
        layer.train(training)
        return from_framework(layer(*[_to_framework_args(a) for a in args]))


def _kind(layer: nn.Module, path: str) -> tuple[str, dict]:
    if isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels:
        return "depthwise_conv2d", TORCH_TENSORS["depthwise_conv2d"]  # Keras's twin is a DepthwiseConv2D
    for cls, kind in LAYER_KINDS:
        if isinstance(layer, cls):
            return kind, TORCH_TENSORS[kind]
    known = ", ".join(cls.__name__ for cls, _ in LAYER_KINDS)
    raise TypeError(f"layer {path!r} ({type(layer).__name__}) has weights but no canonical layout (known: {known})")


def get_layer_weights(model: nn.Module, path: str) -> tuple[str | None, dict[str, np.ndarray]]:
    """``(kind, canonical tensors)`` of the layer at ``path`` (``segparity.weights.layout`` axes, float32);
    ``(None, {})`` for a layer without parameters or buffers of its own (ReLU, pooling, a container)."""
    layer = find_layer(model, path)
    if not list(layer.parameters(recurse=False)) and not list(layer.buffers(recurse=False)):
        return None, {}
    kind, tensors = _kind(layer, path)
    out = {}
    for name, (attribute, axes) in tensors.items():
        value = getattr(layer, attribute)
        if value is not None:
            out[name] = permute_axes(value.detach().cpu().numpy().astype(np.float32), axes, CANONICAL_AXES[kind][name])
    return kind, out


def set_layer_weights(model: nn.Module, path: str, kind: str, tensors: dict[str, np.ndarray]) -> None:
    """Copy canonical ``tensors`` of a ``kind`` layer into the layer at ``path``; every name and shape
    is checked first, and a mismatch names the layer and the tensor. A missing bias is a zero bias
    (``segparity.weights.layout.reconcile_bias``)."""
    layer = find_layer(model, path)
    own_kind, names = _kind(layer, path)
    if own_kind != kind:
        raise ValueError(f"layer {path!r} is a {own_kind}, the tensors are of a {kind}")
    targets = {name: getattr(layer, attribute) for name, (attribute, _) in names.items()
               if getattr(layer, attribute) is not None}
    tensors, zero_bias = reconcile_bias(path, kind, set(targets), tensors)
    if set(targets) - ({"bias"} if zero_bias else set()) != set(tensors):
        raise ValueError(f"layer {path!r}: expected tensors {sorted(targets)}, got {sorted(tensors)}")
    with torch.no_grad():
        if zero_bias:
            targets.pop("bias").zero_()
        for name, target in targets.items():
            value = permute_axes(np.asarray(tensors[name], dtype=np.float32), CANONICAL_AXES[kind][name], names[name][1])
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"layer {path!r} tensor {name!r}: torch expects {tuple(target.shape)}, "
                                 f"got {value.shape} after permuting from canonical {CANONICAL_AXES[kind][name]}")
            target.copy_(torch.from_numpy(value))
