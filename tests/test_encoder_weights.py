"""``build_model(..., encoder_weights=PATH)``: a torchvision classification checkpoint (written here from a seeded
model in torchvision's keys; nothing is downloaded) fills the encoder of torchvision's segmentation models in both
frameworks, read without torch (``segparity.weights.torch_zip``); wrong files are errors naming the key."""

import os

import keras
import numpy as np
import pytest
import torch

from segmentation_tf import build_model as build_keras
from segmentation_tf import to_canonical as keras_canonical
from segmentation_torch import build_model as build_torch
from segmentation_torch import to_canonical as torch_canonical
from segmentation_tf.weights import load_encoder_weights as keras_load_encoder_weights
from segmentation_torch.backbones.mobilenetv3 import MobileNetV3Large
from segmentation_torch.backbones.resnet import ResNet
from segmentation_torch.weights import load_encoder_weights as torch_load_encoder_weights
from segparity.weights.checkpoint import CheckpointError
from segparity.weights.encoders import encoder_tensors
from segparity.weights.torch_zip import read_torch_state_dict
from tests.torchvision_oracle import seed_model


@pytest.fixture(scope="module")
def mobilenet_pth(tmp_path_factory):
    """``mobilenet_v3_large`` classification weights (features.*, classifier.*), seeded, as torch.save writes them."""
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_large.pth"
    torch.save(seed_model(MobileNetV3Large(num_classes=1000)).state_dict(), path)
    return path


def test_the_reader_gives_what_torch_load_gives_without_torch(tmp_path, mobilenet_pth):
    state = torch.load(mobilenet_pth, weights_only=True)
    read = read_torch_state_dict(mobilenet_pth)
    assert list(read) == list(state)
    for key, value in state.items():
        assert read[key].dtype == value.numpy().dtype and np.array_equal(read[key], value.numpy()), key
    t = torch.arange(24, dtype=torch.float32).reshape(4, 6)  # views: a transpose, an offset slice; a scalar; half
    torch.save({"t": t.t(), "slice": t[1:, 2:], "count": torch.tensor(7), "half": t.half()}, tmp_path / "odd.pt")
    odd = read_torch_state_dict(tmp_path / "odd.pt")
    assert np.array_equal(odd["t"], t.t().numpy()) and np.array_equal(odd["slice"], t[1:, 2:].numpy())
    assert odd["count"].shape == () and int(odd["count"]) == 7 and odd["half"].dtype == np.float16


def test_the_reader_refuses_code_and_legacy_files(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo unpickled",))

    torch.save({"weight": torch.zeros(2), "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil.pt is not a plain tensor checkpoint: it names the global "
                                              r"(posix|nt)\.system"):
        read_torch_state_dict(tmp_path / "evil.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"legacy.pt is not a torch zip file .* re-save it"):
        read_torch_state_dict(tmp_path / "legacy.pt")


def test_mobilenet_encoder_weights_fill_the_backbone_in_both_frameworks(mobilenet_pth):
    """``lraspp_mobilenet_v3_large``'s ``backbone.<i>`` is the classifier's ``features.<i>``; the head is left out and
    left as it was (``load_encoder_weights`` in both frameworks; ``build_model(encoder_weights=)`` calls it)."""
    expected = encoder_tensors(build_torch("lraspp_mobilenet_v3_large", num_classes=3).spec, mobilenet_pth)
    state = torch.load(mobilenet_pth, weights_only=True)
    assert np.array_equal(expected["backbone.4.block.2.fc1.weight"], state["features.4.block.2.fc1.weight"].numpy())
    assert len(expected) == sum(1 for k in state if k.startswith("features.") and not k.endswith("num_batches_tracked"))
    for build, canonical, load_encoder_weights in ((build_torch, torch_canonical, torch_load_encoder_weights),
                                                   (build_keras, keras_canonical, keras_load_encoder_weights)):
        torch.manual_seed(0)
        keras.utils.set_random_seed(0)
        model = build("lraspp_mobilenet_v3_large", num_classes=3)
        head = {key: value for key, value in canonical(model).items() if not key.startswith("backbone.")}
        loaded = canonical(load_encoder_weights(model, mobilenet_pth))
        assert all(np.array_equal(loaded[key], value) for key, value in expected.items())
        assert head and all(np.array_equal(loaded[key], value) for key, value in head.items())  # the head untouched
    torch_model = build_torch("lraspp_mobilenet_v3_large", num_classes=3, encoder_weights=mobilenet_pth)
    assert all(np.array_equal(torch_canonical(torch_model)[key], value) for key, value in expected.items())


@pytest.mark.slow  # ResNet-50 in both frameworks: the suite's time budget
def test_resnet_encoder_weights_fill_the_backbone_in_both_frameworks(tmp_path):
    torch.save(seed_model(ResNet(50, num_classes=1000)).state_dict(), tmp_path / "resnet50.pth")
    expected = encoder_tensors(build_torch("deeplabv3_resnet50").spec, tmp_path / "resnet50.pth")
    for build, canonical in ((build_torch, torch_canonical), (build_keras, keras_canonical)):
        model = canonical(build("deeplabv3_resnet50", aux_loss=True, encoder_weights=tmp_path / "resnet50.pth"))
        assert all(np.array_equal(model[key], value) for key, value in expected.items())


def test_a_wrong_file_names_the_key_and_the_backbone(tmp_path, mobilenet_pth):
    torch.save(seed_model(ResNet(18, num_classes=1000)).state_dict(), tmp_path / "resnet18.pth")
    spec = build_torch("deeplabv3_resnet50", num_classes=3).spec
    with pytest.raises(CheckpointError, match=r"resnet18.pth: key 'layer1.0.conv1.weight' has shape \(64, 64, 3, 3\), "
                                              r"torchvision's resnet50 has \(64, 64, 1, 1\)"):
        encoder_tensors(spec, tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError, match=r"key 'conv1.weight' of torchvision's resnet50 is missing .* is this a "
                                              r"resnet50 checkpoint\?"):
        encoder_tensors(spec, mobilenet_pth)
    state = torch.load(mobilenet_pth, weights_only=True)
    torch.save({**state, "features.99.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"key 'features.99.weight' is not part of torchvision's mobilenet_v3_large"):
        encoder_tensors(build_torch("lraspp_mobilenet_v3_large").spec, tmp_path / "extra.pth")
    for build in (build_torch, build_keras):
        with pytest.raises(CheckpointError, match=r"encoder_weights: unet\(depth=2, padding='same'\) has no torchvision "
                                                  r"encoder"):
            build("unet", in_channels=3, num_classes=2, depth=2, base_channels=4, encoder_weights=mobilenet_pth)
