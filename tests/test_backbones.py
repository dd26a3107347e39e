"""torchvision's backbones in both frameworks (``segmentation_{torch,tf}/backbones/``): ResNet-18/34/50/101
(output stride 8 through ``replace_stride_with_dilation``), MobileNetV3-Large (``dilated``) and VGG-16 with and
without BatchNorm: torchvision's
module paths and ``state_dict`` keys, torchvision's outputs and BatchNorm statistics in eval and train mode,
and Keras twins that give torchvision's outputs.

Against torchvision itself where it is importable (``tests/torchvision_oracle.py``, a test-only shim), and
always against ``tests/data/torchvision_backbones.npz``: torchvision 0.28.0's keys, outputs and statistics
for seeded weights, so CI needs no torchvision. The layer-by-layer Keras diffs in both modes are slow
(``python -m pytest -m slow tests/test_backbones.py``; ``.ci/run`` runs them).
"""

import numpy as np
import pytest
import torch

from segmentation_tf.backbones.mobilenetv3 import MobileNetV3Large as KerasMobileNetV3Large
from segmentation_tf.backbones.resnet import ResNet as KerasResNet
from segmentation_tf.backbones.vgg import VGG16 as KerasVGG16
from segmentation_torch.backbones.mobilenetv3 import MobileNetV3Large as TorchMobileNetV3Large
from segmentation_torch.backbones.resnet import ResNet as TorchResNet
from segmentation_torch.backbones.vgg import VGG16 as TorchVGG16
from segparity.comparison.tolerance import ATOL, RTOL
from segparity.parity.layerdiff import default_name_map, diff_models, transfer_weights
from tests.torchvision_oracle import CASES, EXPECTED, NUM_CLASSES, import_torchvision, model_input, seed_model, \
    torchvision_results

STORED = dict(np.load(EXPECTED))
TORCHVISION = import_torchvision()
OUTPUT_CASES = [case for case in CASES if case.outputs]
# VGG-16 has 138 M parameters: drawing its seeded weights alone takes seconds, so its output checks are slow
TORCH_OUTPUT_CASES = [case if not case.builder.startswith("vgg") else pytest.param(case, marks=pytest.mark.slow)
                      for case in OUTPUT_CASES]
# one configuration torchvision's segmentation models use in the default run (the suite's time budget); every
# Keras twin's outputs are checked against torch's, layer by layer in both modes, in the slow diffs
DEFAULT_KERAS_CASES = [case for case in OUTPUT_CASES if case.name == "resnet50_os8"]


def _build(case, framework: str):
    """segparity's twin of a torchvision case, in ``framework``."""
    kwargs = dict(case.kwargs)
    if case.builder.startswith("resnet"):
        build = TorchResNet if framework == "torch" else KerasResNet
        return build(int(case.builder.removeprefix("resnet")),
                     tuple(kwargs.get("replace_stride_with_dilation", (False, False, False))), num_classes=NUM_CLASSES)
    if case.builder.startswith("vgg16"):
        build = TorchVGG16 if framework == "torch" else KerasVGG16
        return build(case.builder == "vgg16_bn", num_classes=NUM_CLASSES)
    build = TorchMobileNetV3Large if framework == "torch" else KerasMobileNetV3Large
    return build(kwargs.get("dilated", False), num_classes=NUM_CLASSES)


def _seeded_torch(case):
    return seed_model(_build(case, "torch"))


def _keras_from(torch_model, case):
    keras_model = _build(case, "tf")
    keras_model(np.moveaxis(model_input(case), 1, -1))
    names = default_name_map(torch_model, keras_model)
    transfer_weights(torch_model, keras_model, names)  # every layer with weights, in both models, is mapped
    return keras_model, names


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_state_dict_keys_and_shapes_are_torchvisions(case):
    state = _build(case, "torch").state_dict()
    assert list(state) == list(STORED[f"{case.name}/keys"])
    assert [",".join(map(str, t.shape)) for t in state.values()] == list(STORED[f"{case.name}/shapes"])
    if TORCHVISION is not None:  # and a state_dict from torchvision's own builder loads strictly
        reference = getattr(TORCHVISION.models, case.builder)(**case.arguments())
        _build(case, "torch").load_state_dict(reference.state_dict(), strict=True)


def test_the_stored_expectations_are_torchvisions():
    """Where torchvision is importable, the checked-in file must be what it computes here."""
    if TORCHVISION is None:
        pytest.skip("torchvision is not installed: the checked-in expectations stand in for it")
    for key, value in torchvision_results(TORCHVISION).items():
        if value.dtype.kind in "US":
            assert list(value) == list(STORED[key]), key
        else:
            np.testing.assert_allclose(value, STORED[key], rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("case", TORCH_OUTPUT_CASES, ids=[case.name for case in OUTPUT_CASES])
def test_torch_outputs_and_statistics_equal_torchvisions(case):
    model = _seeded_torch(case)
    x = torch.from_numpy(model_input(case))
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(x).numpy(), STORED[f"{case.name}/eval"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(model.train()(x).numpy(), STORED[f"{case.name}/train"], rtol=RTOL, atol=ATOL)
    stats = model.state_dict()
    sums = [float(stats[k].double().sum()) for k in stats if k.endswith(("running_mean", "running_var"))]
    np.testing.assert_allclose(sums, STORED[f"{case.name}/bn_sums"], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", DEFAULT_KERAS_CASES + [pytest.param(case, marks=pytest.mark.slow) for case in OUTPUT_CASES
                                                         if case not in DEFAULT_KERAS_CASES],
                         ids=lambda case: case.name)
def test_keras_twin_gives_torchvisions_eval_output(case):
    keras_model, names = _keras_from(_seeded_torch(case), case)
    assert ({"layer1.0.conv1", "fc"} <= set(names) or {"features.4.block.2.fc1", "classifier.3"} <= set(names)
            or {"features.0", "classifier.6"} <= set(names))
    output = np.asarray(keras_model(np.moveaxis(model_input(case), 1, -1), training=False))
    np.testing.assert_allclose(output, STORED[f"{case.name}/eval"], rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("case", OUTPUT_CASES, ids=[case.name for case in OUTPUT_CASES])
def test_keras_twin_agrees_layer_by_layer_in_both_modes(case):
    """Every layer, isolated and end to end, in eval mode; in train mode the layers with weights and the blocks
    (a whole-network container run isolated carries every layer's rounding, judged at the bare atol)."""
    torch_model = _seeded_torch(case)
    keras_model, names = _keras_from(torch_model, case)
    x = model_input(case)
    report = diff_models(torch_model.eval(), keras_model, x, name_map=names)
    assert report.passed, report.format()
    leaves = {path: path for path in names if path not in ("features", "classifier")}
    if case.builder.startswith("vgg"):  # its flatten is the model's own step, between features and classifier
        leaves = {path: path for path in leaves if "." in path}
    report = diff_models(torch_model.train(), keras_model, x, name_map=leaves, training=True)
    assert report.passed, report.format()


def test_basic_blocks_refuse_dilation_as_torchvision_does():
    for build in (TorchResNet, KerasResNet):
        with pytest.raises(ValueError, match="resnet18 has basic blocks, which torchvision builds without dilation"):
            build(18, (False, True, True))
    with pytest.raises(ValueError, match="depth must be one of 18, 34, 50, 101, got 152"):
        TorchResNet(152)
