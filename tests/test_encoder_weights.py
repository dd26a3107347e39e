"""``build_model(..., encoder_weights=PATH)``: a torchvision classification checkpoint (written here from a seeded
model in torchvision's keys; nothing is downloaded) fills the encoder of torchvision's segmentation models, of
segparity's DeepLabV3+ on a ResNet and of its FCN / SegNet on VGG-16, in both frameworks, read without torch
(``segparity.weights.torch_zip``); so does a ``keras.applications.VGG16`` weights ``.h5`` (written here by Keras).
Wrong files are errors naming the key."""

import os

import keras
import numpy as np
import pytest
import torch

from segmentation_tf import build_model as build_keras
from segmentation_tf import from_canonical as keras_from_canonical
from segmentation_tf import to_canonical as keras_canonical
from segmentation_torch import build_model as build_torch
from segmentation_torch import to_canonical as torch_canonical
from segmentation_tf.weights import load_encoder_weights as keras_load_encoder_weights
from segmentation_torch.backbones.mobilenetv3 import MobileNetV3Large
from segmentation_torch.backbones.resnet import ResNet
from segmentation_torch.backbones.vgg import VGG16
from segmentation_torch.weights import load_encoder_weights as torch_load_encoder_weights
from segparity.weights.checkpoint import CheckpointError
from segparity.weights.encoders import encoder_tensors
from segparity.comparison.tolerance import assert_close
from segparity.weights.torch_zip import read_torch_state_dict
from tests.torchvision_oracle import seed_model

RNG = np.random.default_rng(0)


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


def _segnet_encoder(model, x):
    """Torch SegNet's encoder up to its last conv-BN-ReLU (before the last pooling), ``(N, 512, H/16, W/16)``."""
    for i, stage in enumerate(model.encoder):
        if i:
            x = torch.nn.functional.max_pool2d(x, 2)
        for layer in stage:
            x = layer(x)
    return x


def test_vgg16_bn_fills_segnet_with_the_conv_bias_folded_into_the_running_mean(tmp_path):
    """SegNet's encoder is VGG-16-BN's ``features``, but its conv-BN units have no conv bias; the bias goes into the
    running mean. Eval outputs agree with torchvision's ``features``; in train mode the batch mean cancels the bias,
    and the running means stay ``bias`` apart after a step."""
    vgg = seed_model(VGG16(batch_norm=True, num_classes=None)).eval()
    torch.save(vgg.state_dict(), tmp_path / "vgg16_bn.pth")
    expected = encoder_tensors(build_torch("segnet", in_channels=3, num_classes=2).spec, tmp_path / "vgg16_bn.pth")
    state = vgg.state_dict()
    assert np.array_equal(expected["encoder.0.0.conv.weight"], state["features.0.weight"].numpy())
    assert np.array_equal(expected["encoder.4.2.bn.mean"],
                          state["features.41.running_mean"].numpy() - state["features.40.bias"].numpy())
    model = build_torch("segnet", in_channels=3, num_classes=2, encoder_weights=tmp_path / "vgg16_bn.pth").eval()
    x = torch.from_numpy(RNG.normal(size=(2, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        assert_close(_segnet_encoder(model, x).numpy(), vgg.features[:-1](x).numpy(), quantity="encoder (eval)")
        model.train()(x)
        vgg.train()(x)
    assert_close(model.encoder[4][2].bn.running_mean.numpy() + vgg.features[40].bias.detach().numpy(),
                 vgg.features[41].running_mean.numpy(), quantity="running mean after a train step")
    keras_model = build_keras("segnet", in_channels=3, num_classes=2, encoder_weights=tmp_path / "vgg16_bn.pth")
    loaded = keras_canonical(keras_model)
    assert all(np.array_equal(loaded[key], value) for key, value in expected.items())


@pytest.fixture(scope="module")
def keras_vgg16(tmp_path_factory):
    """``keras.applications.VGG16(include_top=False)``, seeded, and its weights as Keras writes them: a legacy ``.h5``
    (the layout of the downloadable ``..._notop.h5``) and a Keras 3 ``.weights.h5``."""
    folder = tmp_path_factory.mktemp("keras_vgg16")
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    for layer in model.layers:  # non-zero biases, so a bias that goes astray shows
        if layer.weights:
            layer.weights[1].assign(RNG.uniform(-0.1, 0.1, layer.weights[1].shape).astype(np.float32))
    model.save(folder / "vgg16.h5")  # Keras's legacy HDF5: model_weights/<layer>/<weight names>
    model.save_weights(folder / "vgg16.weights.h5")
    return model, folder


def test_keras_applications_vgg16_h5_fills_the_vgg_encoder(keras_vgg16):
    """Both Keras layouts read the same; SegNet (no BatchNorm) in torch then computes what Keras's VGG16 computes."""
    model, folder = keras_vgg16
    spec = build_torch("segnet", in_channels=3, num_classes=2, batch_norm=False).spec
    legacy = encoder_tensors(spec, folder / "vgg16.h5")
    keras3 = encoder_tensors(spec, folder / "vgg16.weights.h5")
    assert list(legacy) == list(keras3) and all(np.array_equal(legacy[k], keras3[k]) for k in legacy)
    torch_model = build_torch("segnet", in_channels=3, num_classes=2, batch_norm=False,
                              encoder_weights=folder / "vgg16.h5").eval()
    x = RNG.normal(size=(2, 3, 32, 32)).astype(np.float32)
    block5 = keras.Model(model.inputs, model.get_layer("block5_conv3").output)
    expected = np.moveaxis(keras.ops.convert_to_numpy(block5([np.moveaxis(x, 1, -1)])), -1, 1)
    with torch.no_grad():
        assert_close(_segnet_encoder(torch_model, torch.from_numpy(x)).numpy(), expected, quantity="block5_conv3")
    keras_model = build_keras("segnet", in_channels=3, num_classes=2, batch_norm=False,
                              encoder_weights=folder / "vgg16.weights.h5")
    loaded = keras_canonical(keras_model)
    assert all(np.array_equal(loaded[key], value) for key, value in legacy.items())


def test_a_keras_h5_for_a_network_it_cannot_fill_says_why(tmp_path, keras_vgg16):
    _, folder = keras_vgg16
    with pytest.raises(CheckpointError, match=r"vgg16.h5: a Keras .h5 is read as keras.applications.VGG16, which has "
                                              r"no BatchNorm; this network's encoder is torchvision's vgg16_bn"):
        encoder_tensors(build_torch("segnet", in_channels=3, num_classes=2).spec, folder / "vgg16.h5")
    with pytest.raises(CheckpointError, match=r"segnet\(2 stages, upsample='unpool'\) has encoder \(\(8,\), \(8,\)\), "
                                              r"not VGG-16's"):
        encoder_tensors(build_torch("segnet", in_channels=3, num_classes=2, encoder=((8,), (8,)),
                                    decoder=((8,), (8,))).spec, folder / "vgg16.h5")
    (tmp_path / "other.h5").write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match=r"other.h5: not an HDF5 file"):
        encoder_tensors(build_torch("segnet", in_channels=3, num_classes=2, batch_norm=False).spec,
                        tmp_path / "other.h5")


def test_resnet18_fills_deeplabv3plus_backbone_in_both_frameworks(tmp_path):
    """``deeplabv3plus(backbone="resnet18")``'s ``encoder.*`` is torchvision's ``resnet18`` (its ``fc`` left out);
    the loaded encoder's stages equal torchvision's ``layer1`` and, dilated, keep ``layer4`` at output stride 16;
    the Keras twin computes the same logits (eval)."""
    resnet = seed_model(ResNet(18, num_classes=1000)).eval()
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    options = dict(in_channels=3, num_classes=2, backbone="resnet18", aspp_channels=16, low_level_channels=8,
                   decoder_channels=16, encoder_weights=tmp_path / "resnet18.pth")
    torch_model = build_torch("deeplabv3plus", **options).eval()
    keras_model = build_keras("deeplabv3plus", **options)
    expected = encoder_tensors(torch_model.spec, tmp_path / "resnet18.pth")
    assert len(expected) == sum(1 for k in resnet.state_dict() if not k.startswith("fc.")
                                and not k.endswith("num_batches_tracked"))
    for canonical in (torch_canonical(torch_model), keras_canonical(keras_model)):
        assert all(np.array_equal(canonical[key], value) for key, value in expected.items())
    x = RNG.normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        deep, low = torch_model.encode(torch.from_numpy(x))
        assert_close(low.numpy(), resnet.features(torch.from_numpy(x))["layer1"].numpy(), quantity="layer1")
        assert deep.shape == (2, 512, 2, 2)  # output stride 16: layer4 dilated instead of strided
        logits = torch_model(torch.from_numpy(x)).numpy()
    keras_from_canonical(keras_model, torch_canonical(torch_model))
    assert_close(np.moveaxis(keras.ops.convert_to_numpy(keras_model(np.moveaxis(x, 1, -1), training=False)), -1, 1),
                 logits, quantity="logits (eval)")


@pytest.mark.slow  # a full vgg16 .pth is 528 MB (its classifier): the suite's time and disk budget
def test_vgg16_classifier_fills_fcn_fc6_and_fc7(tmp_path):
    """FCN's convolutionalised ``fc6`` (7x7) is ``classifier.0`` reshaped to ``(4096, 512, 7, 7)``: torchvision flattens
    ``(C, 7, 7)`` C first, so on a 7x7 map the conv's centre output is the linear layer's output."""
    vgg = seed_model(VGG16(batch_norm=False, num_classes=1000)).eval()
    torch.save(vgg.state_dict(), tmp_path / "vgg16.pth")
    model = build_torch("fcn", in_channels=3, num_classes=2, encoder_weights=tmp_path / "vgg16.pth")
    pool5 = torch.from_numpy(RNG.normal(size=(1, 512, 7, 7)).astype(np.float32))
    with torch.no_grad():
        conv = model.fc6.conv(pool5)[:, :, 3, 3].numpy()  # padding 3: the centre sees the whole map
        linear = vgg.classifier[0](torch.flatten(pool5, 1)).numpy()
    assert_close(conv, linear, quantity="fc6 vs classifier.0")
    assert np.array_equal(model.fc7.conv.weight.detach().numpy()[:, :, 0, 0], vgg.classifier[3].weight.detach().numpy())
    expected = encoder_tensors(model.spec, tmp_path / "vgg16.pth")
    loaded = keras_canonical(build_keras("fcn", in_channels=3, num_classes=2, encoder_weights=tmp_path / "vgg16.pth"))
    assert all(np.array_equal(loaded[key], value) for key, value in expected.items())
    assert "fc6.conv.weight" in expected and "fc7.conv.bias" in expected
