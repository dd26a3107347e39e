"""The canonical weight layout: tensor names, axis orders and per-architecture layer tables.

A canonical key is ``<layer path>.<tensor>``. The layer path is the torch attribute path, which is
also the Keras layer name (``decoder.0.up`` in both). Axis orders follow ONNX, a layout neither
framework owns:

================  ========  ==========================  ==============  ==================
layer kind        tensor    canonical axes              torch           Keras
================  ========  ==========================  ==============  ==================
conv2d            weight    O I H W (out, in, kh, kw)   weight  OIHW    kernel  HWIO
conv2d            bias      O                           bias            bias
conv_transpose2d  weight    I O H W (in, out, kh, kw)   weight  IOHW    kernel  HWOI
depthwise_conv2d  weight    O 1 H W (one filter/channel) weight  OIHW    kernel  HWOI (DepthwiseConv2D)
conv_transpose2d  bias      O                           bias            bias
batch_norm        scale     C                           weight          gamma
batch_norm        bias      C                           bias            beta
batch_norm        mean      C                           running_mean    moving_mean
batch_norm        var       C (unbiased running var)    running_var     moving_variance
linear            weight    O I (out, in)               weight  OI      kernel  IO
linear            bias      O                           bias            bias
================  ========  ==========================  ==============  ==================

All tensors are float32. torch's ``num_batches_tracked`` is not stored (it only matters when BN
momentum is ``None``, which segparity never uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANONICAL_AXES: dict[str, dict[str, str]] = {
    "conv2d": {"weight": "OIHW", "bias": "O"},
    "conv_transpose2d": {"weight": "IOHW", "bias": "O"},
    "depthwise_conv2d": {"weight": "OIHW", "bias": "O"},  # torch Conv2d(groups=C): (C, 1, k, k); Keras (k, k, C, 1)
    "batch_norm": {"scale": "C", "bias": "C", "mean": "C", "var": "C"},
    "linear": {"weight": "OI", "bias": "O"},  # torch Linear (out, in); Keras Dense kernel (in, out)
}

# Tensors an optimiser updates; the others (BN mean/var) are running statistics.
TRAINABLE = {("conv2d", "weight"), ("conv2d", "bias"), ("depthwise_conv2d", "weight"), ("depthwise_conv2d", "bias"),
             ("conv_transpose2d", "weight"),
             ("conv_transpose2d", "bias"), ("batch_norm", "scale"), ("batch_norm", "bias"),
             ("linear", "weight"), ("linear", "bias")}


@dataclass(frozen=True)
class LayerEntry:
    """One layer with weights: where it lives and the shapes of its canonical tensors."""

    path: str  # torch attribute path == Keras layer name
    kind: str  # a key of CANONICAL_AXES
    in_channels: int
    out_channels: int
    kernel_size: int = 1
    bias: bool = True

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical tensor name -> shape, for this layer."""
        k, i, o = self.kernel_size, self.in_channels, self.out_channels
        if self.kind == "conv2d":
            shapes = {"weight": (o, i, k, k), "bias": (o,)}
        elif self.kind == "conv_transpose2d":
            shapes = {"weight": (i, o, k, k), "bias": (o,)}
        elif self.kind == "depthwise_conv2d":  # in_channels == out_channels, one k x k filter per channel
            shapes = {"weight": (o, 1, k, k), "bias": (o,)}
        elif self.kind == "linear":
            shapes = {"weight": (o, i), "bias": (o,)}
        elif self.kind == "batch_norm":
            return {name: (o,) for name in CANONICAL_AXES["batch_norm"]}
        else:
            raise ValueError(f"unknown layer kind {self.kind!r}")
        if not self.bias:
            del shapes["bias"]
        return shapes


def permute_axes(array: np.ndarray, source: str, target: str) -> np.ndarray:
    """Reorder the axes of ``array`` from the letter order ``source`` to ``target`` (e.g. HWIO -> OIHW)."""
    if sorted(source) != sorted(target) or len(source) != array.ndim:
        raise ValueError(f"cannot permute array of shape {array.shape} from {source!r} to {target!r}")
    return np.ascontiguousarray(np.transpose(array, [source.index(axis) for axis in target]))


BIASED_KINDS = ("conv2d", "conv_transpose2d", "depthwise_conv2d", "linear")  # "bias" is an additive bias, not BN's


def reconcile_bias(path: str, kind: str, wanted: set[str], tensors: dict[str, np.ndarray]) -> tuple[dict, bool]:
    """``(tensors to copy, whether the layer's bias is to be zeroed)`` for a ``kind`` layer at ``path`` that holds the
    tensors ``wanted``. A missing bias is a zero bias: torch's ``bias=False`` is a Keras ``use_bias=True`` layer with
    zeros (``keras.applications`` convs have one where torchvision's have none), so copying into a layer with a bias
    from one without sets it to zero; a zero bias given to a layer without one is dropped; a non-zero one is an error
    naming the layer (dropping it would change what the layer computes)."""
    tensors = dict(tensors)
    if kind not in BIASED_KINDS:
        return tensors, False
    if "bias" in tensors and "bias" not in wanted:
        bias = np.asarray(tensors.pop("bias"))
        if np.any(bias != 0):
            raise ValueError(f"layer {path!r} has no bias, and the bias given is not zero (max abs "
                             f"{float(np.abs(bias).max()):.3g}): build it with a bias, or leave it out of the name map")
    return tensors, "bias" in wanted and "bias" not in tensors


def conv_bn_entries(path: str, cin: int, cout: int, kernel_size: int, batch_norm: bool) -> list[LayerEntry]:
    """One conv-[BN]-ReLU unit: ``path.conv`` (bias only without BN) and ``path.bn``."""
    layers = [LayerEntry(f"{path}.conv", "conv2d", cin, cout, kernel_size, bias=not batch_norm)]
    if batch_norm:
        layers.append(LayerEntry(f"{path}.bn", "batch_norm", cout, cout))
    return layers


def conv_stack_entries(path: str, cin: int, channels: tuple[int, ...], batch_norm: bool) -> list[LayerEntry]:
    """3x3 conv-[BN]-ReLU units ``path.0``, ``path.1``, ... with the output ``channels``, one after another."""
    layers: list[LayerEntry] = []
    for j, cout in enumerate(channels):
        layers += conv_bn_entries(f"{path}.{j}", cin, cout, 3, batch_norm)
        cin = cout
    return layers


def layer_table(spec) -> list[LayerEntry]:
    """The layer table of any registered architecture (each spec in ``segparity.networks`` builds its own)."""
    return spec.layer_table()


def expected_tensors(spec) -> dict[str, tuple[int, ...]]:
    """Canonical key -> shape for every tensor of ``spec``'s network, in execution order."""
    out: dict[str, tuple[int, ...]] = {}
    for entry in layer_table(spec):
        for tensor, shape in entry.tensor_shapes().items():
            out[f"{entry.path}.{tensor}"] = shape
    return out


def parameter_count(spec) -> int:
    """Number of trainable scalars (BN running statistics excluded)."""
    total = 0
    for entry in layer_table(spec):
        for tensor, shape in entry.tensor_shapes().items():
            if (entry.kind, tensor) in TRAINABLE:
                total += int(np.prod(shape))
    return total


def randomize_for_parity(tensors: dict[str, np.ndarray], spec, seed: int) -> dict[str, np.ndarray]:
    """Copy of ``tensors`` with every tensor that starts out structured made random.

    Fresh BN layers hold scale 1, bias 0, mean 0, var 1 in both frameworks (and eval would equal train
    mode); FCN's transposed convs start as bilinear kernels, which are symmetric in their in/out axes.
    Either hides layout bugs, so parity checks draw BN scale/bias/mean/var at random and add noise to
    every transposed-conv weight, on top of a framework's own initialisation.
    """
    rng = np.random.default_rng(seed)
    out = dict(tensors)
    for entry in layer_table(spec):
        if entry.kind == "batch_norm":
            c = entry.out_channels
            out[f"{entry.path}.scale"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
            out[f"{entry.path}.bias"] = rng.normal(0.0, 0.1, c).astype(np.float32)
            out[f"{entry.path}.mean"] = rng.normal(0.0, 0.1, c).astype(np.float32)
            out[f"{entry.path}.var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        elif entry.kind == "conv_transpose2d":
            weight = out[f"{entry.path}.weight"]
            noise = rng.normal(0.0, 0.1 * max(float(np.abs(weight).max()), 1e-3), weight.shape)
            out[f"{entry.path}.weight"] = (weight + noise).astype(np.float32)
    return out


def linear_after_flatten(weight: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """Reorder the columns of a torch ``Linear`` weight ``(out, C*H*W)`` that follows ``torch.flatten``
    of an ``(N, C, H, W)`` map, for a Keras ``Dense`` after ``Flatten`` of the ``(N, H, W, C)`` map,
    whose inputs come in H, W, C order (pitfall ``flatten_order``, docs/pitfalls.md). The result is
    still ``(out, H*W*C)`` in canonical OI axes; Keras's kernel is its transpose."""
    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.shape[1] != channels * height * width:
        raise ValueError(f"weight of shape {weight.shape} does not follow a flatten of {channels}x{height}x{width} "
                         f"(expected (out, {channels * height * width}))")
    out = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(out, channels, height, width).transpose(0, 2, 3, 1).reshape(out, -1))
