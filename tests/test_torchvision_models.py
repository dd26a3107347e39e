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
from segmentation_tf import registry as keras_registry
from segmentation_tf import weights as keras_weights
from segmentation_torch import registry as torch_registry
from segmentation_torch import weights as torch_weights
from segparity.networks.specs import make_spec
from segparity.weights.layout import expected_tensors, parameter_count
from tests.torchvision_oracle import (EXPECTED_SEGMENTATION, SEGMENTATION_CASES, import_torchvision, seed_model,
                                      torchvision_segmentation_results)

STORED = dict(np.load(EXPECTED_SEGMENTATION))
TORCHVISION = import_torchvision()
OUTPUT_CASES = [case for case in SEGMENTATION_CASES if case.outputs]
# the suite's time budget: the rest, the auxiliary heads among them, run in .ci/run's slow step
DEFAULT_KERAS = ("lraspp_mobilenet_v3_large",)


def _build(case, module):
    return getattr(module, case.name)(num_classes=case.num_classes, aux_loss=case.aux_loss)


def _seeded_torch(case):
    return seed_model(_build(case, torch_models))


def _input(case) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(case.input_shape).astype(np.float32)


@pytest.mark.parametrize("case", [pytest.param(case, marks=pytest.mark.slow) if "101" in case.name else case
                                  for case in SEGMENTATION_CASES], ids=lambda case: case.name)  # ResNet-101: slow
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


@pytest.mark.parametrize("case", [case if "mobilenet" in case.name else pytest.param(case, marks=pytest.mark.slow)
                                  for case in OUTPUT_CASES], ids=lambda case: case.name)  # ResNet's: the time budget
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
def test_keras_twin_gives_torchvisions_eval_outputs_and_the_state_dict_back(case, tmp_path):
    """torchvision's ``state_dict`` -> canonical safetensors -> Keras (the layer table's paths are torchvision's, so
    nothing is renamed): the Keras outputs, channels-last, are torchvision's; Keras -> canonical -> torch gives a
    ``state_dict`` bit-identical to the one loaded (``num_batches_tracked`` is not canonical: torchvision's own
    models never read it at segparity's momentum)."""
    state = _seeded_torch(case).state_dict()
    torch_model = _build(case, torch_models)
    torch_model.load_state_dict(state, strict=True)
    torch_weights.save_weights(torch_model, tmp_path / "torchvision.safetensors")
    keras_model = keras_weights.load_weights(_build(case, keras_models), tmp_path / "torchvision.safetensors")
    x = _input(case)
    result = keras_model(np.moveaxis(x, 1, -1), training=False)
    assert sorted(result) == sorted(["out", "aux"] if case.aux_loss else ["out"])
    for key, value in result.items():
        np.testing.assert_allclose(np.moveaxis(np.asarray(value), -1, 1), STORED[f"{case.name}/eval/{key}"],
                                   rtol=RTOL, atol=ATOL, err_msg=key)
    keras_weights.save_weights(keras_model, tmp_path / "keras.safetensors")
    back = torch_weights.load_weights(_build(case, torch_models), tmp_path / "keras.safetensors").state_dict()
    assert list(back) == list(state)
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(back[key], value), key


@pytest.mark.parametrize("case", SEGMENTATION_CASES, ids=lambda case: case.name)
def test_layer_table_is_torchvisions_state_dict(case):
    """The canonical layer table (``segparity.networks.torchvision_segmentation``) lists torchvision's keys in
    ``state_dict`` order with their shapes: no renaming table (from the stored keys: no model is built)."""
    spec = make_spec(case.name, num_classes=case.num_classes, aux_loss=case.aux_loss)
    kinds = {entry.path: entry.kind for entry in spec.layer_table()}
    bn_names = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
    canonical = {}
    for key, shape in zip(STORED[f"{case.name}/keys"], STORED[f"{case.name}/shapes"]):
        path, _, tensor = key.rpartition(".")
        if tensor != "num_batches_tracked":
            canonical[f"{path}.{bn_names[tensor] if kinds[path] == 'batch_norm' else tensor}"] = \
                tuple(int(n) for n in shape.split(","))
    assert list(canonical.items()) == list(expected_tensors(spec).items())


def test_build_model_takes_torchvisions_names_arguments_and_defaults():
    torch_model = torch_registry.build_model("lraspp_mobilenet_v3_large")
    keras_model = keras_registry.build_model("lraspp_mobilenet_v3_large")
    assert torch_model.spec == keras_model.spec == make_spec("lraspp_mobilenet_v3_large", num_classes=21)
    assert parameter_count(torch_model.spec) == sum(p.numel() for p in torch_model.parameters()) == \
        sum(int(np.prod(v.shape)) for v in keras_model.trainable_variables)
    clone = type(keras_model).from_config(keras_model.get_config())
    assert clone.spec == keras_model.spec
    keras_weights.from_canonical(keras_model, torch_weights.to_canonical(torch_model))
    for height, width in ((64, 33), (97, 75)):  # odd sizes: stride-2 padding and the final resize
        x = np.random.default_rng(height).standard_normal((1, 3, height, width)).astype(np.float32)
        with torch.no_grad():
            result = torch_model.eval()(torch.from_numpy(x))
        assert list(result) == ["out"] and result["out"].shape == (1, 21, height, width)
        keras_out = np.moveaxis(np.asarray(keras_model(np.moveaxis(x, 1, -1))["out"]), -1, 1)
        np.testing.assert_allclose(keras_out, result["out"].numpy(), rtol=RTOL, atol=ATOL)
    for build in (torch_registry.build_model, keras_registry.build_model):
        with pytest.raises(ValueError, match="deeplabv3_resnet50 takes RGB images as torchvision builds it: "
                                             "in_channels must be 3, got 1"):
            build("deeplabv3_resnet50", in_channels=1)
        with pytest.raises(TypeError, match="unknown option.*'output_stride'.*known options: aux_loss"):
            build("deeplabv3_resnet50", output_stride=16)
    with pytest.raises(ValueError, match="x has 1 channels"):
        torch_model(torch.zeros(1, 1, 33, 17))


def test_lraspp_has_no_auxiliary_head_in_either_framework():
    for module in (torch_models, keras_models):
        with pytest.raises(ValueError, match="lraspp_mobilenet_v3_large has no auxiliary head"):
            module.lraspp_mobilenet_v3_large(num_classes=2, aux_loss=True)


@pytest.mark.slow  # three conversions of a 3 M-parameter model: the suite's time budget
def test_convert_moves_a_torchvision_state_dict_to_keras_and_back(tmp_path, capsys):
    """``segparity convert`` on a plain ``torch.save(state_dict)`` of torchvision's model (the ``.pth`` people have):
    to a Keras ``.weights.h5``, a ``.keras`` archive and back to ``.pt``, every tensor bit-identical
    (``num_batches_tracked`` aside)."""
    from segparity import cli

    case = next(case for case in SEGMENTATION_CASES if case.name == "lraspp_mobilenet_v3_large")
    state = _seeded_torch(case).state_dict()
    torch.save(state, tmp_path / "lraspp.pth")
    flags = ["--arch", case.name, "--num-classes", str(case.num_classes)]
    assert cli.main(["convert", str(tmp_path / "lraspp.pth"), str(tmp_path / "lraspp.weights.h5"), *flags]) == 0
    assert cli.main(["convert", str(tmp_path / "lraspp.weights.h5"), str(tmp_path / "lraspp.keras")]) == 0
    assert cli.main(["convert", str(tmp_path / "lraspp.keras"), str(tmp_path / "back.pt")]) == 0  # spec from the archive
    assert "lraspp_mobilenet_v3_large(num_classes=2, aux_loss=False), 113 layers" in capsys.readouterr().out
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back) == list(state)  # torchvision's keys in its order, num_batches_tracked (written as 0) included
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(back[key], value), key


def test_train_refuses_torchvisions_models_naming_where_their_training_parity_is(tmp_path, capsys):
    from segparity import cli

    status = cli.main(["train", "--framework", "torch", "--arch", "lraspp_mobilenet_v3_large", "--out", str(tmp_path / "r")])
    assert status == 2
    assert ("arch 'lraspp_mobilenet_v3_large': segparity train does not train torchvision's models yet"
            in capsys.readouterr().err)
    assert not (tmp_path / "r").exists()
