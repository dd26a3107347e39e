"""torchvision's ResNet-18/34/50/101 in both frameworks (``segmentation_{torch,tf}/backbones/resnet.py``):
torchvision's module paths and ``state_dict`` keys, torchvision's outputs and BatchNorm statistics, and a Keras
twin that agrees with torch layer by layer at odd input sizes.

Against torchvision itself where it is importable (``tests/torchvision_oracle.py``, a test-only shim), and
always against ``tests/data/torchvision_resnet.npz``: torchvision 0.28.0's keys, outputs and statistics for
seeded weights, so CI needs no torchvision.
"""

import numpy as np
import pytest
import torch

from segmentation_tf.backbones.resnet import ResNet as KerasResNet
from segmentation_torch.backbones.resnet import ResNet as TorchResNet
from segparity.comparison.tolerance import ATOL, RTOL
from segparity.parity.layerdiff import default_name_map, diff_models, transfer_weights
from tests.torchvision_oracle import (EXPECTED, INPUT_SHAPE, KEY_CASES, NUM_CLASSES, OUTPUT_CASES, import_torchvision,
                                      model_input, seeded_state, torchvision_results)

STORED = dict(np.load(EXPECTED))
TORCHVISION = import_torchvision()


def _ours(depth, replace):
    return TorchResNet(depth, replace, num_classes=NUM_CLASSES)


def _seeded(model):
    weights = seeded_state({k: tuple(t.shape) for k, t in model.state_dict().items()})
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    return model


@pytest.mark.parametrize("name, depth, replace", KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_state_dict_keys_and_shapes_are_torchvisions(name, depth, replace):
    state = _ours(depth, replace).state_dict()
    assert list(state) == list(STORED[f"{name}/keys"])
    assert [",".join(map(str, t.shape)) for t in state.values()] == list(STORED[f"{name}/shapes"])
    if TORCHVISION is not None:  # and a state_dict from torchvision's own builder loads strictly
        reference = getattr(TORCHVISION.models, f"resnet{depth}")(weights=None, num_classes=NUM_CLASSES,
                                                                  replace_stride_with_dilation=list(replace))
        _ours(depth, replace).load_state_dict(reference.state_dict(), strict=True)


def test_the_stored_expectations_are_torchvisions():
    """Where torchvision is importable, the checked-in file must be what it computes here."""
    if TORCHVISION is None:
        pytest.skip("torchvision is not installed: the checked-in expectations stand in for it")
    live = torchvision_results(TORCHVISION)
    for key, value in live.items():
        if value.dtype.kind in "US":
            assert list(value) == list(STORED[key]), key
        else:
            np.testing.assert_allclose(value, STORED[key], rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("name, depth, replace", OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_torch_outputs_and_statistics_equal_torchvisions(name, depth, replace):
    model = _seeded(_ours(depth, replace))
    x = torch.from_numpy(model_input())
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(x).numpy(), STORED[f"{name}/eval"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(model.train()(x).numpy(), STORED[f"{name}/train"], rtol=RTOL, atol=ATOL)
    stats = model.state_dict()
    sums = [float(stats[k].double().sum()) for k in stats if k.endswith(("running_mean", "running_var"))]
    np.testing.assert_allclose(sums, STORED[f"{name}/bn_sums"], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name, depth, replace", OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_keras_twin_agrees_layer_by_layer_and_with_torchvision(name, depth, replace):
    torch_model = _seeded(_ours(depth, replace))
    keras_model = KerasResNet(depth, replace, num_classes=NUM_CLASSES)
    x = model_input()
    keras_model(np.moveaxis(x, 1, -1))
    names = default_name_map(torch_model, keras_model)
    assert set(names) >= {"conv1", "layer1.0.conv1", "layer4.0.downsample.0", "fc"}
    transfer_weights(torch_model, keras_model, names)  # every layer with weights, in both, is mapped
    for training in (False, True):
        report = diff_models(torch_model.train(training), keras_model, x, name_map=names, training=training)
        assert report.passed, report.format()
        print(f"{name} {INPUT_SHAPE} {'train' if training else 'eval'}: output max_abs {report.output.max_abs:.2e}, "
              f"max_rel {report.output.max_rel:.2e}")
    keras_eval = np.asarray(keras_model(np.moveaxis(x, 1, -1), training=False))
    np.testing.assert_allclose(keras_eval, STORED[f"{name}/eval"], rtol=RTOL, atol=ATOL)


def test_basic_blocks_refuse_dilation_as_torchvision_does():
    for build in (TorchResNet, KerasResNet):
        with pytest.raises(ValueError, match="resnet18 has basic blocks, which torchvision builds without dilation"):
            build(18, (False, True, True))
    with pytest.raises(ValueError, match="depth must be one of 18, 34, 50, 101, got 152"):
        TorchResNet(152)
