"""The two U-Nets have the same structure, names, parameter counts and output sizes."""

import keras
import numpy as np
import pytest
import torch

import segmentation_tf as ktf
import segmentation_torch as kt
from segparity.networks.geometry import unet_output_size
from segparity.weights.layout import expected_tensors, parameter_count
from segparity.networks.specs import make_spec
from tests.test_specs import PAPER


def test_registries_agree():
    assert kt.list_models() == ktf.list_models() == ["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet101", "deeplabv3_resnet50",
        "deeplabv3plus", "fcn", "fcn_resnet101", "fcn_resnet50", "lesson_segnet", "lesson_unet", "lraspp_mobilenet_v3_large",
        "segnet", "unet"]


def test_paper_network_in_both_frameworks():
    spec_params = parameter_count(kt.build_model("unet", **PAPER).spec)
    torch_model = kt.build_model("unet", **PAPER)
    keras_model = ktf.build_model("unet", **PAPER)
    assert sum(p.numel() for p in torch_model.parameters()) == spec_params == 31_030_658
    assert sum(int(np.prod(v.shape)) for v in keras_model.trainable_variables) == spec_params


@pytest.mark.parametrize("padding, size", [("valid", 572), ("valid", 188), ("same", 64)])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_output_sizes_match_geometry(padding, size, upsample):
    options = dict(in_channels=1, num_classes=2, base_channels=2, depth=4, padding=padding, upsample=upsample)
    out = unet_output_size(size, 4, padding)
    torch_out = kt.build_model("unet", **options)(torch.zeros(1, 1, size, size))
    keras_out = ktf.build_model("unet", **options)(np.zeros((1, size, size, 1), np.float32))
    assert tuple(torch_out.shape) == (1, 2, out, out)
    assert tuple(keras_out.shape) == (1, out, out, 2)


# A small configuration of every network and every structural option (name, options, input size).
SMALL = [
    ("unet", dict(base_channels=4, depth=2, batch_norm=True), 16),
    ("unet", dict(base_channels=4, depth=2, batch_norm=False), 16),
    ("unet", dict(preset="lesson-segparity", base_channels=4), 16),
    ("segnet", dict(encoder=((4, 4), (8,)), decoder=((8, 4), (4,)), batch_norm=True), 16),
    ("segnet", dict(encoder=((4, 4), (8,)), decoder=((8, 4), (4,)), batch_norm=False), 16),
    ("segnet", dict(preset="lesson-segparity", encoder=((4,), (8,)), bottleneck=(8,), decoder=((8,), (4,))), 16),
    ("fcn", dict(variant="32s", encoder=((4,),) * 5, fc_channels=8, fc_kernel_size=3), 32),
    ("fcn", dict(variant="16s", encoder=((4,),) * 5, fc_channels=8, fc_kernel_size=3, batch_norm=True), 32),
    ("fcn", dict(variant="8s", encoder=((4,),) * 5, fc_channels=8, padding="paper"), 30),
    ("deeplabv3plus", dict(output_stride=8, stem_channels=4, stage_channels=(4, 8, 8, 8), blocks_per_stage=(1, 1, 1, 1),
                           aspp_channels=4, low_level_channels=4, decoder_channels=4), 16),
]
SMALL_IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(SMALL)]


def _build_both(name, options):
    return (kt.build_model(name, in_channels=3, num_classes=2, **options),
            ktf.build_model(name, in_channels=3, num_classes=2, **options))


@pytest.mark.parametrize("name, options, size", SMALL, ids=SMALL_IDS)
def test_keras_layer_names_are_torch_attribute_paths(name, options, size):
    torch_model, keras_model = _build_both(name, options)
    torch_state = {k for k in torch_model.state_dict() if not k.endswith("num_batches_tracked")}
    keras_paths = {v.path for v in keras_model.weights}
    torch_layers = {k.rsplit(".", 1)[0] for k in torch_state}
    keras_layers = {p.rsplit("/", 1)[0] for p in keras_paths}
    assert torch_layers == keras_layers
    canonical_layers = {k.rsplit(".", 1)[0] for k in expected_tensors(torch_model.spec)}
    assert canonical_layers == torch_layers
    assert len(torch_state) == len(keras_paths) == len(expected_tensors(torch_model.spec))


@pytest.mark.parametrize("name, options, size", SMALL, ids=SMALL_IDS)
def test_parameter_counts_and_output_shapes_agree(name, options, size):
    torch_model, keras_model = _build_both(name, options)
    count = parameter_count(torch_model.spec)
    assert sum(p.numel() for p in torch_model.parameters()) == count
    assert sum(int(np.prod(v.shape)) for v in keras_model.trainable_variables) == count
    assert tuple(torch_model(torch.zeros(2, 3, size, size)).shape) == (2, 2, size, size)
    assert tuple(keras_model(np.zeros((2, size, size, 3), np.float32)).shape) == (2, size, size, 2)


@pytest.mark.parametrize("name, options, size", SMALL, ids=SMALL_IDS)
def test_keras_get_config_rebuilds_the_same_model(name, options, size):
    model = _build_both(name, options)[1]
    clone = type(model).from_config(model.get_config())
    assert clone.spec == model.spec


@pytest.mark.parametrize("name, options, size", SMALL, ids=SMALL_IDS)
def test_keras_model_works_inside_tf_function(name, options, size):
    """Unknown batch, height and width while tracing: every size rule, crop and unpooling is dynamic."""
    import tensorflow as tf

    model = _build_both(name, options)[1]
    run = tf.function(lambda x: model(x, training=False),
                      input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    x = np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32)
    np.testing.assert_allclose(run(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, options, size", SMALL, ids=SMALL_IDS)
def test_keras_models_train_with_fit(name, options, size):
    from segmentation_tf.losses import CrossEntropyLoss

    model = _build_both(name, options)[1]
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=CrossEntropyLoss(ignore_index=255))
    x = np.random.default_rng(0).random((4, size, size, 3), dtype=np.float32)
    y = (x[..., 0] > 0.5).astype("int32")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_paper_presets_have_the_published_sizes():
    """SegNet: 29.4M parameters on VGG-16 (the paper says 29.5M); FCN-8s VGG-16 on VOC: 134M."""
    segnet = kt.build_model("segnet", preset="paper")
    assert parameter_count(segnet.spec) == 29_441_419
    assert [len(stage) for stage in segnet.spec.encoder] == [2, 2, 3, 3, 3]  # VGG-16's 13 convs
    assert sum(len(stage) for stage in segnet.spec.decoder) + 1 == 13  # 12 decoder convs + the 3x3 classifier
    fcn = make_spec("fcn", preset="paper")
    assert parameter_count(fcn) == 134_489_759
    assert (fcn.fc_channels, fcn.fc_kernel_size, fcn.padding, fcn.variant) == (4096, 7, "paper", "8s")
    keras_fcn = ktf.build_model("fcn", preset="paper", in_channels=3, num_classes=21)
    assert sum(int(np.prod(v.shape)) for v in keras_fcn.trainable_variables) == 134_489_759


def test_lesson_presets_have_the_lessons_layer_lists():
    """3->16->32->64->128, bottleneck 256, decoder 128, 64, 32, 16 (U-Net inputs 384, 192, 96, 48), 1x1 to 1."""
    unet = make_spec("unet", preset="lesson-segparity")
    tensors = expected_tensors(unet)
    assert [tensors[f"encoder.{i}.conv1.weight"][:2] for i in range(4)] == [(16, 3), (32, 16), (64, 32), (128, 64)]
    assert tensors["bottleneck.conv1.weight"] == (256, 128, 3, 3)
    assert [tensors[f"decoder.{j}.conv1.weight"][:2] for j in range(4)] == [(128, 384), (64, 192), (32, 96), (16, 48)]
    assert tensors["head.weight"] == (1, 16, 1, 1)
    assert not any(".up." in key or "conv2" in key for key in tensors)
    segnet = make_spec("segnet", preset="lesson-segparity")
    tensors = expected_tensors(segnet)
    assert tensors["bottleneck.0.conv.weight"] == (256, 128, 3, 3)
    assert [tensors[f"decoder.{k}.0.conv.weight"][:2] for k in range(4)] == [(128, 256), (64, 128), (32, 64), (16, 32)]
    assert tensors["head.weight"] == (1, 16, 1, 1)
    assert segnet.upsample == "bilinear"
    for spec in (unet, segnet):
        assert (spec.in_channels, spec.num_classes, spec.output_size(256)) == (3, 1, 256)
        assert spec.bn_eps == 1e-5 and spec.bn_momentum == 0.1


@pytest.mark.parametrize("build", [kt.build_model, ktf.build_model])
def test_explicit_arguments_override_a_preset(build):
    model = build("unet", preset="lesson-segparity", num_classes=3, base_channels=8)
    assert (model.spec.num_classes, model.spec.base_channels, model.spec.convs_per_block) == (3, 8, 1)


def test_keras_padded_stride2_conv_survives_its_own_config():
    """The torch-padded Keras conv (DeepLab's stride-2 convs) rebuilds from get_config, as Keras saving needs."""
    from segmentation_tf.layers import conv2d

    layer = conv2d(3, 4, 3, stride=2, padding=1, name="c")
    clone = type(layer).from_config(layer.get_config())
    assert (clone.symmetric_padding, clone.padding, clone.strides) == (1, "valid", (2, 2))
