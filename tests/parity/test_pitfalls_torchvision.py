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
