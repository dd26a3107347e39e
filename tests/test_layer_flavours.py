"""``build_model(..., layers="stock")``: each framework's own BatchNorm (``torch.nn.BatchNorm2d``,
``keras.layers.BatchNormalization``), the same weights under the same names as the parity flavour; what it changes,
constructed exactly (``segparity.networks.layer_flavours``). The report measures the rest (``stock_rows``)."""

import keras
import numpy as np
import pytest
import torch
from torch import nn

import segmentation_tf as ktf
import segmentation_torch as kt
from segmentation_tf import layers as keras_layers
from segmentation_tf.distributed import synchronize_batchnorm as keras_synchronize
from segmentation_tf.probe import _nested_layers
from segmentation_tf.weights import load_weights as keras_load, save_weights as keras_save
from segmentation_tf.weights import from_canonical as keras_from, to_canonical as keras_canonical
from segmentation_torch.distributed import synchronize_batchnorm as torch_synchronize
from segmentation_torch.layers import BatchNorm as TorchParityBN
from segmentation_torch.layers import batch_norm_layer as torch_batch_norm_layer
from segmentation_torch.weights import load_weights as torch_load, save_weights as torch_save
from segmentation_torch.weights import from_canonical as torch_from, to_canonical as torch_canonical

# Every network of build_model, small; the ResNet and second MobileNet models are built in the slow run (.ci/run's
# slow step: a ResNet-50/101 in Keras takes seconds to build).
SMALL = {
    "unet": dict(in_channels=3, num_classes=2, base_channels=4, depth=2),
    "segnet": dict(in_channels=3, num_classes=2, encoder=((4,), (4, 4)), decoder=((4, 4), (4,)), upsample="unpool"),
    "fcn": dict(in_channels=3, num_classes=3, batch_norm=True, encoder=((4,), (4,), (4,), (4,), (4,)), fc_channels=8),
    "deeplabv3plus": dict(in_channels=3, num_classes=3, stem_channels=4, stage_channels=(4, 4, 8, 8), aspp_channels=8,
                          low_level_channels=4, decoder_channels=8),
    "lesson_segnet": dict(preset="lesson-tf"),
    "lesson_unet": dict(preset="lesson-pytorch"),
    "lraspp_mobilenet_v3_large": dict(num_classes=2),
}
HEAVY = {
    "deeplabv3plus-resnet18": dict(in_channels=3, num_classes=3, backbone="resnet18", aspp_channels=8,
                                   low_level_channels=4, decoder_channels=8),
    "deeplabv3_mobilenet_v3_large": dict(num_classes=2, aux_loss=True),
    **{name: dict(num_classes=2, aux_loss=True)
       for name in ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101")},
}


def build(framework: str, key: str, layers: str):
    name = key.split("-")[0]
    options = {**SMALL, **HEAVY}[key]
    return (kt if framework == "torch" else ktf).build_model(name, layers=layers, **options)


def batch_norms(model) -> list:
    if isinstance(model, nn.Module):
        return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return [layer for layer in _nested_layers(model)
            if isinstance(layer, (keras_layers.BatchNorm, keras.layers.BatchNormalization))]


def check_flavours(key: str) -> None:
    models = {(fw, layers): build(fw, key, layers) for fw in ("torch", "tf") for layers in ("parity", "stock")}
    expected = {("torch", "parity"): TorchParityBN, ("torch", "stock"): nn.BatchNorm2d,
                ("tf", "parity"): keras_layers.BatchNorm, ("tf", "stock"): keras.layers.BatchNormalization}
    counts = set()
    for (fw, layers), model in models.items():
        norms = batch_norms(model)
        assert norms and all(type(m) is expected[fw, layers] for m in norms), (fw, layers)
        assert model.layer_flavour == layers
        counts.add(len(norms))
    assert len(counts) == 1  # the same BatchNorms in all four
    # one canonical set of weights loads into all four and reads back unchanged
    reference = torch_canonical(models["torch", "parity"])
    rng = np.random.default_rng(0)
    weights = {k: rng.uniform(0.5, 1.5, v.shape).astype(np.float32) for k, v in reference.items()}
    for (fw, layers), model in models.items():
        (torch_from if fw == "torch" else keras_from)(model, weights)
        back = (torch_canonical if fw == "torch" else keras_canonical)(model)
        assert list(back) == list(weights), (fw, layers)
        assert all(np.array_equal(back[k], weights[k]) for k in weights), (fw, layers)


@pytest.mark.parametrize("key", list(SMALL))
def test_both_flavours_have_each_framework_s_batchnorm_and_one_weights_layout(key):
    check_flavours(key)


@pytest.mark.slow
@pytest.mark.parametrize("key", list(HEAVY))
def test_both_flavours_of_the_resnet_and_second_mobilenet_models(key):
    check_flavours(key)


def test_every_network_is_covered():
    assert sorted({key.split("-")[0] for key in {**SMALL, **HEAVY}}) == kt.list_models() == ktf.list_models()


def test_a_stock_checkpoint_loads_into_the_parity_flavour_of_the_other_framework(tmp_path):
    keras_stock = build("tf", "unet", "stock")
    rng = np.random.default_rng(1)
    keras_from(keras_stock, {k: rng.standard_normal(v.shape).astype(np.float32)
                             for k, v in keras_canonical(keras_stock).items()})
    keras_save(keras_stock, tmp_path / "stock.safetensors")
    torch_parity = torch_load(build("torch", "unet", "parity"), tmp_path / "stock.safetensors")
    torch_save(torch_parity, tmp_path / "back.safetensors")
    keras_back = keras_load(build("tf", "unet", "stock"), tmp_path / "back.safetensors")
    before, after = keras_canonical(keras_stock), keras_canonical(keras_back)
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_an_unknown_flavour_is_named(framework):
    with pytest.raises(ValueError, match=r"layers='fast': expected one of 'parity', 'stock'"):
        build(framework, "unet", "fast")


def test_the_running_variance_rule_each_flavour_uses():
    """Per channel the batch is [0, 2] (N*H*W = 2): mean 1, biased variance 1, unbiased 2, all exact. torch momentum
    0.5 (Keras 0.5): torch's update, parity or stock, and segparity's Keras BatchNorm take the unbiased variance,
    0.5 * 1 + 0.5 * 2 = 1.5; ``keras.layers.BatchNormalization`` the biased one, 0.5 * 1 + 0.5 * 1 = 1.0."""
    x = np.array([0.0, 2.0], np.float32).reshape(2, 1, 1, 1)
    for layers in ("parity", "stock"):
        bn = torch_batch_norm_layer(1, eps=1e-5, momentum=0.5, layers=layers).train()
        bn(torch.from_numpy(x))
        assert bn.running_var.item() == 1.5 and bn.running_mean.item() == 0.5
    found = {}
    for layers in ("parity", "stock"):
        bn = keras_layers.batch_norm_layer(1, eps=1e-5, momentum=0.5, layers=layers, name=f"bn_{layers}")
        bn(x.transpose(0, 2, 3, 1), training=True)
        found[layers] = (float(bn.moving_variance.numpy()[0]), float(bn.moving_mean.numpy()[0]))
    assert found == {"parity": (1.5, 0.5), "stock": (1.0, 0.5)}


def test_keras_stock_normalises_as_the_parity_layer_within_float32():
    """Training mode: the batch statistics in float32 (stock) or float64 (parity) move outputs by float32 rounding only;
    inference: the same fold of the running statistics."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((4, 8, 8, 3)) * 3 + 5).astype(np.float32)
    variables = [rng.uniform(0.5, 2.0, 3).astype(np.float32) for _ in range(4)]
    out = {}
    for layers in ("parity", "stock"):
        bn = keras_layers.batch_norm_layer(3, eps=1e-5, momentum=0.9, layers=layers, name=f"bn_{layers}")
        for variable, value in zip((bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance), variables):
            variable.assign(value)
        out[layers] = [np.asarray(bn(x, training=training)) for training in (False, True)]
    np.testing.assert_allclose(out["stock"][0], out["parity"][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["stock"][1], out["parity"][1], rtol=1e-5, atol=1e-5)


def test_pooling_and_upsampling_are_the_stock_keras_layers_ops():
    """Why the stock flavour keeps segparity's pooling and up-sampling: they are the ops Keras's own layers run."""
    x = np.random.default_rng(3).standard_normal((2, 6, 10, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(keras_layers.max_pool_2x2(x)), np.asarray(keras.layers.MaxPooling2D(2)(x)))
    np.testing.assert_array_equal(np.asarray(keras_layers.upsample_bilinear_2x(x)),
                                  np.asarray(keras.layers.UpSampling2D(2, interpolation="bilinear")(x)))
    np.testing.assert_array_equal(np.asarray(keras_layers.resize_bilinear(x, 9, 4)),
                                  np.asarray(keras.layers.Resizing(9, 4, interpolation="bilinear")(x)))


def test_torch_stock_is_torch_s_own_batchnorm_bit_for_bit():
    """segparity's torch ``BatchNorm`` is ``nn.BatchNorm2d`` with required arguments: the same logits, gradients and
    running statistics (the lesson's TF exercise excepted: it asks for Keras's biased update, which stock torch
    does not have)."""
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((2, 3, 16, 16)).astype(np.float32))
    results = []
    for layers in ("parity", "stock"):
        torch.manual_seed(0)
        model = build("torch", "unet", layers).train()
        out = model(x)
        out.square().mean().backward()
        results.append([out.detach()] + [p.grad for p in model.parameters()] + list(model.buffers()))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_keras_stock_model_saves_its_flavour_in_its_config():
    model = build("tf", "unet", "stock")
    again = type(model).from_config(model.get_config())
    assert again.layer_flavour == "stock" and all(type(m) is keras.layers.BatchNormalization for m in batch_norms(again))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_synchronised_batchnorm_needs_the_parity_flavour(framework):
    synchronize = torch_synchronize if framework == "torch" else keras_synchronize
    assert synchronize(build(framework, "unet", "parity")) == 10  # 5 blocks of U-Net depth 2, 2 each
    with pytest.raises(ValueError, match=r"synchronize_batchnorm: 10 BatchNorm layers are .* layers='stock'"):
        synchronize(build(framework, "unet", "stock"))
