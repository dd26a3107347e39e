"""torchvision's segmentation models in both frameworks (``segmentation_{torch,tf}/models/torchvision_segmentation.py``):
``fcn_resnet50/101``, ``deeplabv3_resnet50/101``, ``deeplabv3_mobilenet_v3_large``, ``lraspp_mobilenet_v3_large``
with torchvision's arguments, ``state_dict`` keys and outputs (``"out"`` and, with ``aux_loss``, ``"aux"``, both
at the input size), in eval and train mode, BatchNorm statistics included; the Keras twins give the same outputs.

Against torchvision where it is importable (``tests/torchvision_oracle.py``) and always against
``tests/data/torchvision_segmentation.npz`` (seeded weights, a 2 x 3 x 19 x 17 input: odd, so 'same' padding
at stride 2 and the final resize are exercised). Two Keras twins run in the default suite, all four in the slow set.
"""

import numpy as np
import pytest
import torch

from segmentation_tf.models import torchvision_segmentation as keras_models
from segmentation_torch.models import torchvision_segmentation as torch_models
from segparity.comparison.tolerance import ATOL, RTOL
from segparity.parity.layerdiff import default_name_map, transfer_weights
from tests.torchvision_oracle import (EXPECTED_SEGMENTATION, SEGMENTATION_CASES, import_torchvision, seed_model,
                                      torchvision_segmentation_results)

STORED = dict(np.load(EXPECTED_SEGMENTATION))
TORCHVISION = import_torchvision()
OUTPUT_CASES = [case for case in SEGMENTATION_CASES if case.outputs]
DEFAULT_KERAS = ("deeplabv3_resnet50", "lraspp_mobilenet_v3_large")  # the suite's time budget: the rest are slow


def _build(case, module):
    return getattr(module, case.name)(num_classes=case.num_classes, aux_loss=case.aux_loss)


def _seeded_torch(case):
    return seed_model(_build(case, torch_models))


def _input(case) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(case.input_shape).astype(np.float32)


@pytest.mark.parametrize("case", SEGMENTATION_CASES, ids=lambda case: case.name)
def test_state_dict_keys_and_shapes_are_torchvisions(case):
    state = _build(case, torch_models).state_dict()
    assert list(state) == list(STORED[f"{case.name}/keys"])
    assert [",".join(map(str, t.shape)) for t in state.values()] == list(STORED[f"{case.name}/shapes"])
    if TORCHVISION is not None:  # a state_dict from torchvision's own builder loads strictly
        reference = getattr(TORCHVISION.models.segmentation, case.name)(**case.arguments())
        _build(case, torch_models).load_state_dict(reference.state_dict(), strict=True)


def test_the_stored_expectations_are_torchvisions():
    if TORCHVISION is None:
        pytest.skip("torchvision is not installed: the checked-in expectations stand in for it")
    for key, value in torchvision_segmentation_results(TORCHVISION).items():
        if value.dtype.kind in "US":
            assert list(value) == list(STORED[key]), key
        else:
            np.testing.assert_allclose(value, STORED[key], rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=lambda case: case.name)
def test_torch_outputs_and_statistics_equal_torchvisions(case):
    model = _seeded_torch(case)
    x = torch.from_numpy(_input(case))
    with torch.no_grad():
        for mode in ("eval", "train"):
            result = model.train(mode == "train")(x)
            assert list(result) == (["out", "aux"] if case.aux_loss else ["out"])
            for key, value in result.items():
                assert value.shape[-2:] == x.shape[-2:]  # resized to the input, odd sizes included
                np.testing.assert_allclose(value.numpy(), STORED[f"{case.name}/{mode}/{key}"], rtol=RTOL, atol=ATOL,
                                           err_msg=f"{mode} {key}")
    stats = model.state_dict()
    sums = [float(stats[k].double().sum()) for k in stats if k.endswith(("running_mean", "running_var"))]
    np.testing.assert_allclose(sums, STORED[f"{case.name}/bn_sums"], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", [case if case.name in DEFAULT_KERAS else pytest.param(case, marks=pytest.mark.slow)
                                  for case in OUTPUT_CASES], ids=lambda case: case.name)
def test_keras_twin_gives_torchvisions_eval_outputs(case):
    """Weights move by name (every layer with weights, in both models, is in the identity name map: the Keras
    layer names are torchvision's paths); the Keras outputs, channels-last, are torchvision's."""
    torch_model = _seeded_torch(case)
    keras_model = _build(case, keras_models)
    x = _input(case)
    keras_model(np.moveaxis(x, 1, -1))
    names = default_name_map(torch_model, keras_model)
    transfer_weights(torch_model, keras_model, names)
    result = keras_model(np.moveaxis(x, 1, -1), training=False)
    assert sorted(result) == sorted(["out", "aux"] if case.aux_loss else ["out"])
    for key, value in result.items():
        np.testing.assert_allclose(np.moveaxis(np.asarray(value), -1, 1), STORED[f"{case.name}/eval/{key}"],
                                   rtol=RTOL, atol=ATOL, err_msg=key)


def test_lraspp_has_no_auxiliary_head_in_either_framework():
    for module in (torch_models, keras_models):
        with pytest.raises(ValueError, match="lraspp_mobilenet_v3_large has no auxiliary head"):
            module.lraspp_mobilenet_v3_large(num_classes=2, aux_loss=True)
