"""Named porting pitfalls outside the networks' layers: initialisers, dropout, loss conventions,
flatten order and ceil-mode pooling. Each test shows the naive port diverging (asserting the error is
large) and the fixed port agreeing (asserting it is small); docs/pitfalls.md has torch's and TF's
behaviour, the fix and a source for each."""

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segmentation_tf import layers as keras_layers
from segmentation_tf import losses as keras_losses
from segmentation_torch import layers as torch_layers
from segmentation_torch import losses as torch_losses
from segparity.weights.layout import linear_after_flatten, permute_axes
from segparity.comparison.tolerance import assert_close, compare

RNG = np.random.default_rng(0)


def _nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def _nchw(x):
    return np.transpose(keras.ops.convert_to_numpy(x), (0, 3, 1, 2))


def test_pitfall_default_initialisers():
    """torch ``Conv2d`` draws its kernel from kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)) and its bias
    from U(+-1/sqrt(fan_in)); Keras ``Conv2D`` uses glorot_uniform (U(+-sqrt(6/(fan_in+fan_out)))) and
    zero bias. A port that keeps each framework's default starts from different networks: here the
    kernel's spread differs by 2x and Keras's bias is all zeros. Fix: one initialisation, moved through
    canonical weights (what ``segparity compare-train`` does), or Keras
    ``VarianceScaling(1/3, "fan_in", "uniform")``, which is torch's kernel distribution exactly."""
    torch.manual_seed(0)
    fan_in = 64 * 3 * 3
    bound = 1 / np.sqrt(fan_in)
    torch_conv = nn.Conv2d(64, 32, 3)
    naive = keras.layers.Conv2D(32, 3)
    naive.build((None, None, None, 64))
    torch_std, naive_std = torch_conv.weight.std().item(), float(np.std(keras.ops.convert_to_numpy(naive.kernel)))
    assert naive_std / torch_std > 1.8  # glorot: sqrt(6/(576+288)) = 0.083 vs 0.042 bounds
    assert not np.any(keras.ops.convert_to_numpy(naive.bias)) and torch_conv.bias.abs().max().item() > bound / 2
    fixed = keras.layers.Conv2D(32, 3, kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
                                bias_initializer=keras.initializers.RandomUniform(-bound, bound))
    fixed.build((None, None, None, 64))
    kernel = keras.ops.convert_to_numpy(fixed.kernel)
    assert np.abs(kernel).max() <= bound and abs(np.std(kernel) / torch_std - 1) < 0.03  # U(+-b): std b/sqrt(3)
    # the same numbers, not only the same distribution: through canonical weights
    x = RNG.normal(size=(1, 64, 6, 6)).astype(np.float32)
    fixed.kernel.assign(permute_axes(torch_conv.weight.detach().numpy(), "OIHW", "HWIO"))
    fixed.bias.assign(torch_conv.bias.detach().numpy())
    assert_close(_nchw(fixed(_nhwc(x))), torch_conv(torch.from_numpy(x)).detach().numpy(), quantity="conv")


def test_pitfall_dropout_masks():
    """Both frameworks use inverted dropout (kept values scaled by 1/(1-p) in training, identity in
    inference), but each draws its mask from its own generator: the same seed gives different masks,
    so training-mode outputs of a faithful port differ wherever the masks do. Fix: compare in inference
    mode, or feed one mask to both (segparity's networks have no dropout, so training steps agree)."""
    p, x = 0.3, RNG.normal(size=(4, 8, 16, 16)).astype(np.float32)
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    out_torch = F.dropout(torch.from_numpy(x), p, training=True).numpy()
    out_keras = _nchw(keras.layers.Dropout(p, seed=0)(_nhwc(x), training=True))
    assert compare(out_keras, out_torch).max_abs > 1.0
    assert 0.2 < np.mean((out_torch == 0) != (out_keras == 0)) < 0.6  # the masks disagree on ~42% of entries
    mask = out_torch != 0  # the same mask: the same scaling, exactly
    assert_close(np.where(mask, x / (1 - p), 0), out_torch, quantity="torch's scaling")
    assert_close(np.where(out_keras != 0, x / (1 - p), 0), out_keras, quantity="Keras's scaling")
    assert_close(_nchw(keras.layers.Dropout(p)(_nhwc(x), training=False)),
                 F.dropout(torch.from_numpy(x), p, training=False).numpy(), quantity="inference")


def test_pitfall_bce_probability_clamp():
    """BCE on probabilities: ``torch.nn.BCELoss`` clamps ``log p`` at -100; Keras ``binary_crossentropy``
    clips ``p`` to [1e-7, 1 - 1e-7] (in float32, 1 - 1e-7 rounds to 1 - 1.19e-7). A confidently wrong
    pixel costs 100 in torch and 16.1 (or 15.9) in Keras. Fix: compute BCE from logits
    (``BCEWithLogitsLoss`` / ``from_logits=True``), as segparity's networks do; segparity's probability
    form clips like Keras in both frameworks."""
    p = np.array([[0.0, 1.0, 0.5, 1e-9]], np.float32).reshape(1, 1, 1, 4)
    t = np.array([[1.0, 0.0, 1.0, 1.0]], np.float32).reshape(1, 1, 1, 4)
    torch_loss = F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(t), reduction="none").numpy()
    keras_loss = keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(t.reshape(4, 1), p.reshape(4, 1)))
    assert torch_loss.ravel()[0] == 100.0 and abs(keras_loss[0] - 16.118) < 1e-3
    assert compare(keras_loss, torch_loss.ravel()).max_abs > 80
    logits = RNG.normal(scale=20.0, size=(2, 1, 4, 4)).astype(np.float32)  # saturated: probabilities round to 0/1
    target = (RNG.random((2, 1, 4, 4)) > 0.5).astype(np.float32)
    expected = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(target)).item()
    from_logits = keras.losses.BinaryCrossentropy(from_logits=True)(_nhwc(target), _nhwc(logits))
    assert_close(float(from_logits), expected, quantity="BCE from logits")
    probabilities = 1 / (1 + np.exp(-logits.astype(np.float64)))
    labels = target[:, 0].astype(np.int64)  # segparity's losses: probability form, clipped alike in both
    ours_torch = torch_losses.BinaryCrossEntropyLoss(from_logits=False)(torch.from_numpy(probabilities.astype(np.float32)),
                                                                       torch.from_numpy(labels)).item()
    ours_keras = keras_losses.BinaryCrossEntropyLoss(from_logits=False)(labels, _nhwc(probabilities.astype(np.float32)))
    assert_close(float(ours_keras), ours_torch, quantity="segparity BCE on probabilities")


def test_pitfall_ce_ignore_index_weighted_mean():
    """Cross-entropy with class weights and ignored pixels: ``F.cross_entropy(weight=w, ignore_index=255)``
    divides the weighted sum by the sum of the weights of the counted pixels. Keras
    ``SparseCategoricalCrossentropy(ignore_class=255)`` with per-pixel ``sample_weight = w[y]`` divides
    by the number of counted pixels instead (1.91 vs 1.37 here). Without weights both agree. Fix:
    segparity's ``CrossEntropyLoss(class_weights=, ignore_index=)`` divides by the weight sum in both."""
    logits = RNG.normal(size=(2, 3, 4, 4)).astype(np.float32)
    labels = RNG.integers(0, 3, (2, 4, 4))
    labels[0, 0, :] = 255
    weights = np.array([0.2, 1.0, 3.0], np.float32)
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), weight=torch.from_numpy(weights),
                               ignore_index=255).item()
    pixel_weights = np.where(labels == 255, 0.0, weights[np.where(labels == 255, 0, labels)])
    naive = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)(
        labels, _nhwc(logits), sample_weight=pixel_weights)
    assert abs(float(naive) - expected) > 0.3
    unweighted = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)(labels, _nhwc(logits))
    assert_close(float(unweighted), F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels),
                                                    ignore_index=255).item(), quantity="unweighted CE")
    fixed = keras_losses.CrossEntropyLoss(class_weights=weights.tolist(), ignore_index=255)(labels, _nhwc(logits))
    ours = torch_losses.CrossEntropyLoss(class_weights=weights.tolist(), ignore_index=255)(
        torch.from_numpy(logits), torch.from_numpy(labels)).item()
    assert_close(float(fixed), expected, quantity="weighted CE")
    assert_close(ours, expected, quantity="weighted CE (torch)")


def test_pitfall_flatten_order():
    """``torch.flatten`` of ``(N, C, H, W)`` lists features in C, H, W order; Keras ``Flatten`` of
    ``(N, H, W, C)`` in H, W, C order. A ``Linear`` weight copied into a ``Dense`` kernel unchanged (only
    transposed) multiplies the wrong features: shapes fit, outputs are wrong. Fix:
    ``segparity.weights.layout.linear_after_flatten`` reorders the weight's columns once, when converting (or
    permute to channels-first before ``Flatten``: docs/parity-harness.md)."""
    x = RNG.normal(size=(2, 4, 3, 5)).astype(np.float32)
    weight = RNG.normal(size=(6, 4 * 3 * 5)).astype(np.float32)
    expected = torch.flatten(torch.from_numpy(x), 1).numpy() @ weight.T
    flat = keras.ops.convert_to_numpy(keras.layers.Flatten()(_nhwc(x)))
    naive = flat @ permute_axes(weight, "OI", "IO")
    assert compare(naive, expected).max_abs > 1.0
    fixed = flat @ permute_axes(linear_after_flatten(weight, 4, 3, 5), "OI", "IO")
    assert_close(fixed, expected, quantity="dense after flatten")


def test_pitfall_max_pool_ceil_mode():
    """torch ``max_pool2d(2, 2, ceil_mode=True)`` keeps the partial last window (5 -> 3, Caffe's and the
    FCN paper's rounding); Keras ``MaxPooling2D(2, 2)`` (``padding="valid"``) drops it (5 -> 2). Fix:
    ``padding="same"``, which for a 2x2 window at stride 2 pads the bottom/right with -inf: exactly ceil
    mode (``segmentation_tf.layers.max_pool_2x2(ceil_mode=True)``). At even sizes all three agree."""
    x = RNG.normal(size=(2, 3, 5, 7)).astype(np.float32)
    expected = torch_layers.max_pool_2x2(torch.from_numpy(x), ceil_mode=True).numpy()
    naive = _nchw(keras.layers.MaxPooling2D(2, 2)(_nhwc(x)))
    assert expected.shape == (2, 3, 3, 4) and naive.shape == (2, 3, 2, 3)
    assert_close(_nchw(keras_layers.max_pool_2x2(_nhwc(x), ceil_mode=True)), expected, quantity="ceil-mode pool")
    assert_close(_nchw(keras.layers.MaxPooling2D(2, 2, padding="same")(_nhwc(x))), expected, quantity="same pool")


def test_pitfall_transposed_conv_kernel_layout():
    """torch ``ConvTranspose2d.weight`` is ``(in, out, kh, kw)``, the reverse of ``Conv2d``'s ``(out, in,
    kh, kw)``; Keras ``Conv2DTranspose.kernel`` is ``(kh, kw, out, in)``, the reverse of ``Conv2D``'s.
    Both are reversed, so a converter that treats both as conv kernels happens to be right; one that
    knows Keras's transposed layout but reads torch's weight as ``(out, in, kh, kw)`` swaps in and out,
    and with as many inputs as outputs the shapes fit and it loads silently. Fix: one named layout per
    layer kind and framework (``segparity.weights.layout``: ``IOHW -> HWOI``)."""
    x = RNG.normal(size=(1, 4, 5, 5)).astype(np.float32)
    w = RNG.normal(size=(4, 4, 2, 2)).astype(np.float32)  # in = out = 4
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=2).numpy()
    layer = keras.layers.Conv2DTranspose(4, 2, strides=2, use_bias=False)
    layer.build((None, None, None, 4))
    layer.kernel.assign(permute_axes(w, "OIHW", "HWOI"))  # naive: torch's weight read as a Conv2d's
    assert compare(_nchw(layer(_nhwc(x))), expected).max_abs > 1.0
    assert np.array_equal(permute_axes(w, "OIHW", "HWIO"), permute_axes(w, "IOHW", "HWOI"))  # the lucky one
    layer.kernel.assign(permute_axes(w, "IOHW", "HWOI"))
    assert_close(_nchw(layer(_nhwc(x))), expected, quantity="transposed conv")


def _tf32(x: np.ndarray) -> np.ndarray:
    """Round float32 values to TF32 (10 explicit mantissa bits, round to nearest even), as tensor cores
    read their operands."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = (bits + np.uint32(0xFFF) + ((bits >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    return bits.view(np.float32)


def test_pitfall_tf32_on_gpu():
    """On Ampere and later NVIDIA GPUs, TF32 tensor cores read float32 operands with 10 mantissa bits
    (relative rounding 2**-11 instead of 2**-24). TensorFlow enables TF32 by default for matmuls and
    convolutions; torch enables it for cuDNN convolutions (``torch.backends.cudnn.allow_tf32``, default
    True) but not for matmuls. A "float32" comparison on such a GPU then differs by ~1e-3 relative, 100x
    the parity tolerance. Fix: switch it off in both (``segmentation_*/device.py``; reports print the
    state). This machine has no GPU in CI, so the effect is reproduced on the CPU by rounding the
    operands to TF32 as the tensor cores do; with CUDA present the real cuDNN convolution is checked too."""
    x = RNG.normal(size=(2, 64, 16, 16)).astype(np.float32)
    w = RNG.normal(scale=1 / 24, size=(32, 64, 3, 3)).astype(np.float32)
    conv = lambda a, b: F.conv2d(torch.from_numpy(a), torch.from_numpy(b), padding=1).numpy()  # noqa: E731
    float32 = conv(x, w)
    emulated_tf32 = conv(_tf32(x), _tf32(w))
    assert compare(emulated_tf32, float32).max_abs > 1e-3
    keras_conv = keras_layers.conv2d(64, 32, 3, padding=1, bias=False, name="conv")
    keras_conv.kernel.assign(permute_axes(w, "OIHW", "HWIO"))
    assert_close(_nchw(keras_conv(_nhwc(x))), float32, quantity="conv, TF32 off")
    if torch.cuda.is_available():  # the real thing, where a GPU is lent
        from segmentation_torch.device import set_tf32

        xs, ws = torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda()
        try:
            set_tf32(True)
            on = F.conv2d(xs, ws, padding=1).cpu().numpy()
            set_tf32(False)
            off = F.conv2d(xs, ws, padding=1).cpu().numpy()
        finally:
            set_tf32(False)
        assert_close(off, float32, quantity="cuDNN conv, TF32 off")
        if torch.cuda.get_device_capability()[0] >= 8:  # Ampere or later: TF32 exists
            assert compare(on, float32).max_abs > 1e-4


def test_pitfall_keras_bce_unwraps_sigmoid():
    """The lesson's PyTorch exercise ends its network in ``nn.Sigmoid()`` and then applies ``BCEWithLogitsLoss``: torch
    takes the probabilities as logits (a sigmoid twice). Keras's ``binary_crossentropy(from_logits=True)`` looks at how
    its input was made: a tensor from a sigmoid activation (``_keras_logits``, or a ``Sigmoid`` op in a graph) is
    replaced by the sigmoid's input, so the same code in Keras computes the loss without the second sigmoid, and the
    two frameworks' losses differ. segparity's Keras BCE writes the with-logits formula out and takes what it is given."""
    import tensorflow as tf

    x = RNG.normal(scale=3.0, size=(2, 1, 8, 8)).astype(np.float32)
    labels = (RNG.random((2, 1, 8, 8)) > 0.5).astype(np.float32)
    twice = F.binary_cross_entropy_with_logits(torch.sigmoid(torch.from_numpy(x)), torch.from_numpy(labels)).item()
    once = F.binary_cross_entropy_with_logits(torch.from_numpy(x), torch.from_numpy(labels)).item()
    probabilities = keras.layers.Activation("sigmoid")(np.moveaxis(x, 1, -1))  # carries _keras_logits
    stock = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def in_a_graph(logits):  # the Sigmoid op is recognised in a graph too
        return stock(np.moveaxis(labels, 1, -1), tf.sigmoid(logits))

    with pytest.warns(UserWarning, match="produced by a Sigmoid activation"):  # Keras says so, as a warning only
        eager = float(stock(np.moveaxis(labels, 1, -1), probabilities))
        graph = float(in_a_graph(np.moveaxis(x, 1, -1)))
    assert abs(eager - once) < 1e-5 and abs(graph - once) < 1e-5  # Keras dropped the second sigmoid
    assert abs(twice - once) > 0.1
    ours = keras_losses.BinaryCrossEntropyLoss()(keras.ops.convert_to_tensor(labels[:, 0]), probabilities)
    assert_close(float(ours), torch_losses.BinaryCrossEntropyLoss()(torch.sigmoid(torch.from_numpy(x)),
                                                                     torch.from_numpy(labels[:, 0])).item(),
                 quantity="segparity's BCE on sigmoid outputs")
    assert abs(float(ours) - twice) < 1e-5
