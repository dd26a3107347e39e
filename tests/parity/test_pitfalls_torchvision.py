"""Named pitfalls of porting torchvision's real networks (issue 24): each test shows the naive port diverging, with
the measured error asserted large, and segparity's port agreeing at the usual tolerance; docs/pitfalls.md has the
behaviour of both frameworks, the fix and a source for each."""

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segmentation_tf.backbones.resnet import ResNet as KerasResNet
from segmentation_tf.layers import BatchNorm as KerasBatchNorm
from segmentation_tf.layers import conv2d
from segmentation_tf.weights import get_layer
from segmentation_torch.backbones.resnet import ResNet as TorchResNet
from segparity.comparison.tolerance import assert_close, compare
from segparity.networks.mobilenetv3 import BN_EPS, BN_MOMENTUM
from segparity.networks.resnet import resnet_layer_table
from segparity.weights.layout import permute_axes
from tests.torchvision_oracle import seed_model

RNG = np.random.default_rng(0)


def _nhwc(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def _nchw(x):
    return np.moveaxis(keras.ops.convert_to_numpy(x), -1, 1)


def test_pitfall_hard_sigmoid_definitions():
    """torch's ``hardsigmoid`` (MobileNetV3's squeeze-excite gate) is ``relu6(x + 3) / 6``; Keras 2's
    ``hard_sigmoid``, still in many ports, was ``clip(0.2 x + 0.5, 0, 1)``: a gate off by up to 1/12 (at x = +-2.5).
    Keras 3's ``keras.activations.hard_sigmoid`` is torch's; segparity writes it out as torch defines it."""
    x = np.linspace(-4, 4, 801, dtype=np.float32)
    expected = F.hardsigmoid(torch.from_numpy(x)).numpy()
    keras2 = np.clip(0.2 * x + 0.5, 0.0, 1.0)
    assert abs(np.abs(keras2 - expected).max() - 1 / 12) < 1e-6
    assert_close(keras.ops.convert_to_numpy(keras.activations.hard_sigmoid(x)), expected, quantity="hard_sigmoid")
    assert_close(keras.ops.convert_to_numpy(keras.ops.relu6(x + 3.0) / 6.0), expected, quantity="relu6(x + 3) / 6")


def test_pitfall_mobilenet_v3_batch_norm():
    """torchvision's MobileNetV3 builds every BatchNorm with eps 0.001 and momentum 0.01, not torch's defaults
    (1e-5, 0.1). A port that assumes the defaults (Keras eps 1e-5, momentum 0.9) normalises low-variance channels
    differently in eval mode and moves the running mean ten times too far per step. Keras's own defaults
    (eps 1e-3, momentum 0.99) happen to be torchvision's here; segparity passes both explicitly."""
    torch_bn = torch.nn.BatchNorm2d(4, eps=BN_EPS, momentum=BN_MOMENTUM)
    with torch.no_grad():
        torch_bn.running_var.fill_(2e-3)  # small variances make the epsilon visible
        torch_bn.running_mean.copy_(torch.from_numpy(RNG.normal(size=4).astype(np.float32)))
    x = RNG.normal(size=(2, 4, 5, 5)).astype(np.float32)
    expected = torch_bn.eval()(torch.from_numpy(x)).detach().numpy()
    built = {}
    for name, eps, momentum in (("naive", 1e-5, 0.9), ("fixed", BN_EPS, 1.0 - BN_MOMENTUM)):
        layer = KerasBatchNorm(4, eps=eps, momentum=momentum, name=name)
        layer.moving_mean.assign(torch_bn.running_mean.numpy())
        layer.moving_variance.assign(torch_bn.running_var.numpy())
        built[name] = layer
    naive = compare(_nchw(built["naive"](_nhwc(x), training=False)), expected)
    assert not naive.passed and naive.max_abs > 0.1
    assert_close(_nchw(built["fixed"](_nhwc(x), training=False)), expected, quantity="eval with torchvision's eps")
    torch_bn.train()(torch.from_numpy(x))
    for name, layer in built.items():
        layer(_nhwc(x), training=True)
    moved = np.abs(keras.ops.convert_to_numpy(built["naive"].moving_mean) - torch_bn.running_mean.numpy()).max()
    assert moved > 0.05
    assert_close(keras.ops.convert_to_numpy(built["fixed"].moving_mean), torch_bn.running_mean.numpy(),
                 quantity="running mean after one step")


def _keras_applications_name(path: str) -> str:
    """torchvision's ResNet path -> ``keras.applications.ResNet50``'s layer name (``layer1.0.conv2`` ->
    ``conv2_block1_2_conv``; ``downsample.0/1`` -> ``_0_conv/_0_bn``)."""
    if path in ("conv1", "bn1"):
        return {"conv1": "conv1_conv", "bn1": "conv1_bn"}[path]
    stage, block, layer = path.split(".", 2)
    prefix = f"conv{int(stage[len('layer'):]) + 1}_block{int(block) + 1}"
    if layer.startswith("downsample"):
        return f"{prefix}_0_{'conv' if layer.endswith('0') else 'bn'}"
    return f"{prefix}_{layer[-1]}_{'conv' if layer.startswith('conv') else 'bn'}"


@pytest.mark.slow  # two ResNet-50s: the suite's time budget (in .ci/run's slow step)
def test_pitfall_keras_applications_resnet50_is_v1():
    """torchvision's ResNet-50 is "v1.5": a bottleneck that halves the resolution does it in its 3x3 conv.
    ``keras.applications.ResNet50`` is the original v1: the stride sits in the first 1x1 conv, which then skips
    three of every four positions before the 3x3 sees them. Every weight has the same shape, so torchvision's
    weights load into it without complaint (biases zero, its BN eps 1.001e-5), and the features differ from
    ``layer2`` on. segparity's Keras ResNet follows torchvision and agrees."""
    torch_model = seed_model(TorchResNet(50, num_classes=None)).eval()
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    x = RNG.normal(size=(1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model.features(torch.from_numpy(x))["layer4"].numpy()
    naive = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    fixed = KerasResNet(50, num_classes=None)
    fixed(_nhwc(x))
    for entry in resnet_layer_table(50, (False, False, False)):
        for model, layer in ((naive, naive.get_layer(_keras_applications_name(entry.path))),
                             (fixed, get_layer(fixed, entry.path))):
            if entry.kind == "conv2d":
                layer.kernel.assign(permute_axes(state[f"{entry.path}.weight"], "OIHW", "HWIO"))
                if model is naive:
                    layer.bias.assign(np.zeros(entry.out_channels, np.float32))
            else:
                for attribute, key in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                       ("moving_variance", "running_var")):
                    getattr(layer, attribute).assign(state[f"{entry.path}.{key}"])
    assert naive.get_layer("conv3_block1_1_conv").strides == (2, 2)  # v1: the stride in the first 1x1
    scale = float(np.abs(expected).max())  # compared in units of layer4's largest value, as gradients are
    wrong = compare(_nchw(naive(_nhwc(x), training=False)), expected, scale=scale)
    assert wrong.max_abs > 0.1, wrong
    assert_close(_nchw(fixed.features(_nhwc(x), training=False)["layer4"]), expected, scale=scale,
                 quantity="layer4 (v1.5)")


@pytest.mark.parametrize("dilation", [2, 6])
def test_pitfall_dilated_conv_padding(dilation):
    """torch's padding is a number written by hand and does not grow with the dilation: torchvision's ``conv3x3``
    pads by ``dilation``, so the map keeps its size. A port that keeps the undilated ``padding=1`` (a literal
    ``ZeroPadding2D(1)`` + valid conv, or ``nn.Conv2d(..., padding=1, dilation=d)`` on the torch side) loses
    ``2 (d - 1)`` rows and columns; resized back to the input size, as DeepLab's decoder resizes, every pixel is
    off. Keras's ``"same"`` at stride 1 pads ``d`` on each side and agrees; so does ``segmentation_tf.layers.conv2d``."""
    size = 17
    x = RNG.normal(size=(2, 4, size, size)).astype(np.float32)
    w = (RNG.normal(size=(4, 4, 3, 3)) / 6).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=dilation, dilation=dilation).numpy()
    kernel = permute_axes(w, "OIHW", "HWIO")
    naive = keras.Sequential([keras.layers.ZeroPadding2D(1),
                              keras.layers.Conv2D(4, 3, dilation_rate=dilation, padding="valid", use_bias=False)])
    naive.build((None, size, size, 4))
    naive.layers[-1].kernel.assign(kernel)
    shrunk = naive(_nhwc(x))
    assert tuple(shrunk.shape[1:3]) == (size - 2 * (dilation - 1),) * 2
    resized = keras.ops.image.resize(shrunk, (size, size), interpolation="bilinear")
    wrong = compare(_nchw(resized), expected)
    assert not wrong.passed and wrong.max_abs > 0.1, wrong
    same = keras.layers.Conv2D(4, 3, dilation_rate=dilation, padding="same", use_bias=False)
    same.build((None, size, size, 4))
    same.kernel.assign(kernel)
    assert_close(_nchw(same(_nhwc(x))), expected, quantity=f"Keras 'same' at dilation {dilation}")
    fixed = conv2d(4, 4, 3, padding=dilation, dilation=dilation, bias=False, name="fixed")
    fixed.kernel.assign(kernel)
    assert_close(_nchw(fixed(_nhwc(x))), expected, quantity=f"conv2d(padding={dilation}, dilation={dilation})")


@pytest.mark.slow  # two ResNet-50s: the suite's time budget (in .ci/run's slow step)
def test_pitfall_resnet_dilation_rules():
    """Two ways to turn a ResNet's strides into dilations, with the same weights: torchvision's
    ``replace_stride_with_dilation`` (its DeepLabV3 / FCN) gives a dilated stage's first block the dilation *before*
    the change (``previous_dilation``); segmentation_models_pytorch's ``make_dilated`` (its DeepLabV3+, and most
    Keras DeepLab ports) dilates every conv of the stage. Porting one as the other loads without complaint and
    ``layer4`` differs; segparity builds both (``dilation_rule``) and each Keras twin agrees with its torch model."""
    x = RNG.normal(size=(1, 3, 64, 64)).astype(np.float32)
    replace = (False, True, True)  # output stride 8
    torchvision_rule = seed_model(TorchResNet(50, replace, num_classes=None)).eval()
    smp_rule = TorchResNet(50, replace, num_classes=None, dilation_rule="smp").eval()
    smp_rule.load_state_dict(torchvision_rule.state_dict())
    assert (torchvision_rule.layer4[0].conv2.dilation, smp_rule.layer4[0].conv2.dilation) == ((2, 2), (4, 4))
    with torch.no_grad():
        expected = torchvision_rule.features(torch.from_numpy(x))["layer4"].numpy()
        other = smp_rule.features(torch.from_numpy(x))["layer4"].numpy()
    scale = float(np.abs(expected).max())
    wrong = compare(other, expected, scale=scale)
    assert not wrong.passed and wrong.max_abs > 0.01 * scale, wrong  # measured: 0.43, 2.1% of the scale (20.1)
    state = {k: v.numpy() for k, v in torchvision_rule.state_dict().items()}
    for rule, reference in (("torchvision", expected), ("smp", other)):
        keras_model = KerasResNet(50, replace, num_classes=None, dilation_rule=rule)
        keras_model(_nhwc(x))
        for entry in resnet_layer_table(50, replace):
            layer = get_layer(keras_model, entry.path)
            if entry.kind == "conv2d":
                layer.kernel.assign(permute_axes(state[f"{entry.path}.weight"], "OIHW", "HWIO"))
            else:
                for attribute, key in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                       ("moving_variance", "running_var")):
                    getattr(layer, attribute).assign(state[f"{entry.path}.{key}"])
        assert_close(_nchw(keras_model.features(_nhwc(x), training=False)["layer4"]), reference, scale=scale,
                     quantity=f"layer4 ({rule} rule)")


@pytest.mark.parametrize("feature_size", [6, 8])
def test_pitfall_aspp_image_pooling(feature_size):
    """torchvision's ``ASPPPooling`` averages the whole feature map (``AdaptiveAvgPool2d(1)``), applies a 1x1 conv and
    resizes the 1x1 result bilinearly back, which is a broadcast (to one rounding). Keras DeepLab ports often pool with a fixed
    ``AveragePooling2D(pool_size)`` sized for the training input (here a 4x4 feature map) and up-sample that: at
    another input size the pool covers part of the map (6x6: the top-left 4x4) or leaves a 2x2 map that the
    resize spreads into a gradient (8x8). segparity's ASPP takes the mean over H and W and broadcasts."""
    x = RNG.normal(size=(2, 8, feature_size, feature_size)).astype(np.float32)
    x[:, :, feature_size // 2:, :] += 1.0  # the lower half brighter, so a partial pool shows
    w = (RNG.normal(size=(4, 8, 1, 1)) / np.sqrt(8)).astype(np.float32)
    with torch.no_grad():
        pooled = F.conv2d(F.adaptive_avg_pool2d(torch.from_numpy(x), 1), torch.from_numpy(w))
        expected = F.interpolate(pooled, size=(feature_size, feature_size), mode="bilinear",
                                 align_corners=False).numpy()
    # a bilinear resize of a 1x1 map is a broadcast, up to one rounding: torch computes (1 - l) v + l v
    assert_close(np.broadcast_to(pooled.numpy(), expected.shape), expected, quantity="broadcast vs 1x1 resize")
    kernel = permute_axes(w, "OIHW", "HWIO")
    fixed_pool = keras.ops.mean(_nhwc(x), axis=(1, 2), keepdims=True)
    fixed = keras.ops.broadcast_to(keras.ops.matmul(fixed_pool, kernel[0, 0]), (2, feature_size, feature_size, 4))
    assert_close(_nchw(fixed), expected, quantity="global mean, 1x1 conv, broadcast")
    naive_pool = keras.layers.AveragePooling2D(pool_size=4)(_nhwc(x))  # sized for a 4x4 training feature map
    naive = keras.ops.image.resize(keras.ops.matmul(naive_pool, kernel[0, 0]), (feature_size, feature_size),
                                   interpolation="bilinear")
    wrong = compare(_nchw(naive), expected)
    assert not wrong.passed and wrong.max_abs > 0.1, wrong


@pytest.mark.parametrize("source, target", [((13, 10), (97, 75)), ((5, 7), (33, 49))])
def test_pitfall_final_resize_odd_sizes(source, target):
    """torchvision's segmentation models end with ``F.interpolate(size=input size, mode="bilinear",
    align_corners=False)``, at odd sizes by non-integer factors. TF2's ``tf.image.resize`` (Keras's
    ``ops.image.resize``) uses the same half-pixel centres and agrees. TF1's ``tf.compat.v1.image.resize_bilinear``,
    still in older Keras DeepLab ports, defaults to ``half_pixel_centers=False`` (``src = dst * in / out``): the
    map shifts by half an input pixel; ``align_corners=True`` (the original TF DeepLab) differs again."""
    import tensorflow as tf

    x = RNG.normal(size=(1, 3, *source)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(x), size=target, mode="bilinear", align_corners=False).numpy()
    assert_close(_nchw(keras.ops.image.resize(_nhwc(x), target, interpolation="bilinear")), expected,
                 quantity="keras.ops.image.resize")
    for name, legacy in (("half_pixel_centers=False", tf.compat.v1.image.resize_bilinear(_nhwc(x), target)),
                         ("align_corners=True", tf.compat.v1.image.resize_bilinear(_nhwc(x), target, align_corners=True))):
        wrong = compare(_nchw(legacy), expected)
        assert not wrong.passed and wrong.max_abs > 0.05, (name, wrong)
