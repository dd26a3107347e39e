"""Named pitfalls of the FCN / SegNet / DeepLab layers: each test shows the naive port diverging from
torch and segparity's port agreeing (docs/pitfalls.md). Weights are shared through canonical layouts."""

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segmentation_tf import layers as keras_layers
from segparity.weights.layout import permute_axes
from segparity.comparison.tolerance import assert_close

RNG = np.random.default_rng(0)


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def _nchw(x):
    return np.transpose(keras.ops.convert_to_numpy(x), (0, 3, 1, 2))


@pytest.mark.parametrize("size", [8, 9])
def test_pitfall_tf_same_padding_stride2(size):
    """torch ``Conv2d(3, stride=2, padding=1)`` pads one pixel on every side. Keras ``padding="same"`` at
    stride 2 pads ``max(3 - 2, 0) = 1`` in total on even sizes, all of it below/right (0 above), so every
    output pixel samples a window shifted by one; on odd sizes it pads 1 on each side and happens to
    agree. ``segmentation_tf.layers.conv2d(stride=2, padding=1)`` pads like torch at every size."""
    x = RNG.normal(size=(2, 3, size, size)).astype(np.float32)
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1).numpy()
    naive = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)
    naive.build((None, None, None, 3))
    naive.kernel.assign(permute_axes(w, "OIHW", "HWIO"))
    fixed = keras_layers.conv2d(3, 4, 3, stride=2, padding=1, bias=False, name="fixed")
    fixed.kernel.assign(permute_axes(w, "OIHW", "HWIO"))
    naive_error = np.abs(_nchw(naive(_nhwc(x))) - expected).max()
    if size % 2 == 0:
        assert naive_error > 0.1
    else:
        assert naive_error < 1e-5
    assert_close(_nchw(fixed(_nhwc(x))), expected, quantity="stride-2 conv")


@pytest.mark.parametrize("source, target", [(4, 32), (3, 7), (8, 16)])
def test_pitfall_align_corners(source, target):
    """DeepLab resizes by arbitrary factors. ``align_corners=True`` (the original TF DeepLab's choice, and
    torch's before 0.4) maps corner pixel centres onto each other; Keras/TF ``resize(..., "bilinear")``
    uses half-pixel centres. segparity uses half-pixel centres (``align_corners=False``) in both."""
    x = RNG.normal(size=(1, 2, source, source)).astype(np.float32)
    fixed = keras_layers.resize_bilinear(_nhwc(x), target, target)
    corners = F.interpolate(torch.from_numpy(x), size=(target, target), mode="bilinear", align_corners=True).numpy()
    half_pixel = F.interpolate(torch.from_numpy(x), size=(target, target), mode="bilinear", align_corners=False).numpy()
    assert np.abs(_nchw(fixed) - corners).max() > 0.05
    assert_close(_nchw(fixed), half_pixel, quantity="bilinear resize")


def test_pitfall_transposed_conv_padding():
    """torch's usual x2 "same" up-sampling ``ConvTranspose2d(3, stride=2, padding=1, output_padding=1)``
    crops one pixel at the top/left of the full (2n + 1) output. Keras ``Conv2DTranspose(padding="same")``
    crops it at the bottom/right instead, so the naive port is shifted by one pixel. The fixed port runs
    the unpadded (``"valid"``) transposed conv and crops explicitly, as segparity's FCN does."""
    x = RNG.normal(size=(1, 3, 5, 5)).astype(np.float32)
    w = RNG.normal(size=(3, 2, 3, 3)).astype(np.float32)  # canonical IOHW = torch's layout
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1,
                                  output_padding=1).numpy()
    layers = {}
    for padding in ("same", "valid"):
        layers[padding] = keras.layers.Conv2DTranspose(2, 3, strides=2, padding=padding, use_bias=False)
        layers[padding].build((None, None, None, 3))
        layers[padding].kernel.assign(permute_axes(w, "IOHW", "HWOI"))
    naive = _nchw(layers["same"](_nhwc(x)))
    fixed = keras_layers.crop(layers["valid"](_nhwc(x)), 1, 1, 10, 10)
    assert naive.shape == expected.shape and np.abs(naive - expected).max() > 1.0
    assert_close(_nchw(fixed), expected, quantity="transposed conv")


def _op_types(fn, *args) -> set[str]:
    import tensorflow as tf

    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


def test_pitfall_tf_dilated_conv_space_to_batch():
    """A speed pitfall, not a numbers one: ``keras.layers.Conv2D(dilation_rate=r)`` runs as
    SpaceToBatchND -> conv -> BatchToSpaceND, convolving r x r interleaved grids of the padded map
    (20-50x slower than oneDNN's dilated kernel for DeepLab's ASPP rates on an 8x8 map). segparity's
    dilated conv is one Conv2D op with ``dilations`` set, forward and backward, and gives torch's
    numbers (``benchmarks/`` times the whole network)."""
    import tensorflow as tf

    if not keras_layers._dilated_conv_is_one_op():
        pytest.skip("this TensorFlow build has no one-op dilated conv gradient (no oneDNN): Keras's path is used")
    x = RNG.normal(size=(2, 4, 8, 8)).astype(np.float32)
    w = RNG.normal(size=(5, 4, 3, 3)).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=6, dilation=6).numpy()
    naive = keras.layers.Conv2D(5, 3, padding="same", dilation_rate=6, use_bias=False)
    naive.build((None, None, None, 4))
    fixed = keras_layers.conv2d(4, 5, 3, padding=6, dilation=6, bias=False, name="fixed")
    for layer in (naive, fixed):
        layer.kernel.assign(permute_axes(w, "OIHW", "HWIO"))

    def gradient_graph(layer):
        def loss_and_gradients(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                loss = tf.reduce_sum(layer(inputs) ** 2)
            return tape.gradient(loss, [inputs, layer.kernel])
        return _op_types(loss_and_gradients, tf.constant(_nhwc(x)))

    assert {"SpaceToBatchND", "BatchToSpaceND"} <= gradient_graph(naive)
    fixed_ops = gradient_graph(fixed)
    assert not fixed_ops & {"SpaceToBatchND", "BatchToSpaceND"}
    assert {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"} <= fixed_ops
    assert_close(_nchw(fixed(_nhwc(x))), expected, quantity="dilated conv")
    assert_close(_nchw(naive(_nhwc(x))), expected, quantity="dilated conv (Keras's path)")


@pytest.mark.parametrize("padding", [6, 0])
def test_float64_dilated_conv_is_a_sum_of_taps_without_space_to_batch(padding):
    """Where TensorFlow's CPU kernels have no dilated gradient (float64), segparity's dilated conv is one 1x1 conv
    per kernel tap on the window the tap sees: torch's float64 numbers, value and gradients, and no
    SpaceToBatchND (which made one float64 training step of torchvision's DeepLabV3 take minutes)."""
    import tensorflow as tf

    from segmentation_tf.device import precision

    x = RNG.normal(size=(2, 4, 9, 7))
    w = RNG.normal(size=(5, 4, 3, 3))
    xt, wt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(w).requires_grad_(True)
    expected = F.conv2d(xt, wt, padding=padding, dilation=3)
    expected.square().sum().backward()
    with precision("float64"):
        layer = keras_layers.conv2d(4, 5, 3, padding=padding, dilation=3, bias=False, name="taps")
        layer.kernel.assign(permute_axes(w, "OIHW", "HWIO"))

        def loss_and_gradients(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                out = layer(inputs)
                loss = tf.reduce_sum(out ** 2)
            return [out, *tape.gradient(loss, [inputs, layer.kernel])]

        assert not _op_types(loss_and_gradients, tf.constant(_nhwc(x))) & {"SpaceToBatchND", "BatchToSpaceND"}
        out, grad_x, grad_w = loss_and_gradients(tf.constant(_nhwc(x)))
    grad_w = permute_axes(keras.ops.convert_to_numpy(grad_w), "HWIO", "OIHW")
    for actual, reference in ((_nchw(out), expected), (_nchw(grad_x), xt.grad), (grad_w, wt.grad)):
        assert actual.dtype == np.float64
        np.testing.assert_allclose(actual, reference.detach().numpy(), rtol=1e-12, atol=1e-12)
