"""Bad input gets a clear error from segparity's own checks, before any framework code runs."""

import traceback

import numpy as np
import pytest
import torch

import segmentation_tf as ktf
import segmentation_torch as kt


def _raised_in_validation(excinfo) -> bool:
    """The error comes from shared/validation.py, not from inside torch or TensorFlow."""
    frames = traceback.extract_tb(excinfo.tb)
    return frames[-1].filename.endswith(("shared/validation.py", "shared/networks/specs.py"))


@pytest.fixture(scope="module")
def models():
    options = dict(in_channels=3, num_classes=2, base_channels=4, depth=4)
    return {"torch": kt.build_model("unet", **options), "tf": ktf.build_model("unet", **options)}


def _call(models, framework, nchw):
    if framework == "torch":
        return models["torch"](torch.from_numpy(nchw))
    return models["tf"](np.moveaxis(nchw, 1, -1) if nchw.ndim == 4 else nchw)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_size_not_divisible_names_nearest_sizes(models, framework):
    with pytest.raises(ValueError, match=r"height 100 cannot go through unet\(depth=4, padding='same'\).*"
                                         r"divisible by 2\*\*depth = 16; nearest valid sizes: 96, 112") as exc:
        _call(models, framework, np.zeros((1, 3, 100, 96), np.float32))
    assert _raised_in_validation(exc)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_valid_padding_size_error(framework):
    build = kt.build_model if framework == "torch" else ktf.build_model
    model = build("unet", in_channels=1, num_classes=2, base_channels=2, depth=4, padding="valid")
    x = np.zeros((1, 1, 570, 572), np.float32)
    with pytest.raises(ValueError, match=r"height 570 .*nearest valid sizes: 556, 572"):
        model(torch.from_numpy(x)) if framework == "torch" else model(np.moveaxis(x, 1, -1))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_wrong_channel_count(models, framework):
    with pytest.raises(ValueError, match=r"x has 1 channels .* built with in_channels=3") as exc:
        _call(models, framework, np.zeros((1, 1, 32, 32), np.float32))
    assert _raised_in_validation(exc)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_wrong_rank(models, framework):
    with pytest.raises(ValueError, match=r"x must be a 4-D batch .* got rank 3.*add a batch axis") as exc:
        if framework == "torch":
            models["torch"](torch.zeros(3, 32, 32))
        else:
            models["tf"](np.zeros((32, 32, 3), np.float32))
    assert _raised_in_validation(exc)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_integer_images(models, framework):
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor \(float32\), got dtype (u)?int") as exc:
        _call(models, framework, np.zeros((1, 3, 32, 32), np.uint8))
    assert _raised_in_validation(exc)


@pytest.mark.parametrize("build", [kt.build_model, ktf.build_model])
def test_unknown_model_and_option(build):
    with pytest.raises(ValueError, match="known models: deeplabv3_mobilenet_v3_large, .*, deeplabv3plus, fcn, .*, segnet, unet"):
        build("segnet2", in_channels=3, num_classes=2)
    with pytest.raises(TypeError, match="unknown option.*'width'"):
        build("unet", in_channels=3, num_classes=2, width=8)


@pytest.mark.parametrize("build", [kt.build_model, ktf.build_model])
def test_missing_required_arguments(build):
    with pytest.raises(TypeError, match="in_channels"):
        build("unet", num_classes=2)


def test_torch_input_dtype_must_match_weights(models):
    with pytest.raises(TypeError, match=r"x has dtype float64 but the model's weights are float32") as exc:
        models["torch"](torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    assert _raised_in_validation(exc)


def test_keras_casts_float64_input_like_any_keras_layer(models):
    out = models["tf"](np.zeros((1, 32, 32, 3), np.float64))
    assert out.dtype.name == "float32"


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_training_batch_norm_on_one_value_per_channel(framework):
    """A 16x16 input through depth 4 leaves a 1x1 bottleneck: train-mode BN has one value per channel."""
    build = kt.build_model if framework == "torch" else ktf.build_model
    model = build("unet", in_channels=3, num_classes=2, base_channels=2, depth=4)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        if framework == "torch":
            model.train()(torch.zeros(1, 3, 16, 16))
        else:
            model(np.zeros((1, 16, 16, 3), np.float32), training=True)


# One small configuration per network, and a size each cannot take with its valid neighbours.
SMALL = {
    "segnet": (dict(encoder=((4,), (4,), (4,)), decoder=((4,), (4,), (4,))), 36,
               r"height 36 cannot go through segnet\(3 stages, upsample='unpool'\): it needs height and width divisible "
               r"by 2\*\*3 = 8 .*nearest valid sizes: 32, 40"),
    "fcn": (dict(encoder=((4,),) * 5, fc_channels=8, fc_kernel_size=3), 48,
            r"height 48 cannot go through fcn\(variant='8s', 5 stages, padding='same'\): it needs height and width "
            r"divisible by 2\*\*5 = 32; nearest valid sizes: 32, 64"),
    "deeplabv3plus": (dict(stem_channels=4, stage_channels=(4, 4, 4, 4), blocks_per_stage=(1, 1, 1, 1), aspp_channels=4,
                           low_level_channels=4, decoder_channels=4), 40,
                      r"height 40 cannot go through deeplabv3plus\(output_stride=16\): it needs height and width "
                      r"divisible by output_stride = 16; nearest valid sizes: 32, 48"),
}


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("arch", sorted(SMALL))
def test_every_network_names_itself_the_size_and_valid_sizes(arch, framework):
    options, size, message = SMALL[arch]
    build = kt.build_model if framework == "torch" else ktf.build_model
    model = {framework: build(arch, in_channels=3, num_classes=2, **options)}
    with pytest.raises(ValueError, match=message) as exc:
        _call(model, framework, np.zeros((1, 3, size, 32), np.float32))
    assert _raised_in_validation(exc)


@pytest.mark.parametrize("build", [kt.build_model, ktf.build_model])
def test_unknown_variant_preset_and_bad_structure(build):
    with pytest.raises(ValueError, match=r"variant must be one of '32s', '16s', '8s'; got '4s'"):
        build("fcn", in_channels=3, num_classes=2, variant="4s")
    with pytest.raises(ValueError, match=r"unknown preset 'lesson' for model 'fcn'; known presets: paper"):
        build("fcn", preset="lesson")
    with pytest.raises(ValueError, match=r"output_stride must be one of 8, 16; got 32"):
        build("deeplabv3plus", in_channels=3, num_classes=2, output_stride=32)
    with pytest.raises(ValueError, match=r"decoder stage 1 receives 8 channels but the indices of encoder stage 0 have 4"):
        build("segnet", in_channels=3, num_classes=2, encoder=((4,), (8,)), decoder=((8,), (4,)))
    with pytest.raises(ValueError, match=r"decoder must have one stage per encoder stage \(2\)"):
        build("segnet", in_channels=3, num_classes=2, encoder=((4,), (4,)), decoder=((4,),))
    with pytest.raises(TypeError, match=r"encoder\[1\]\[0\] must be an int"):
        build("segnet", in_channels=3, num_classes=2, encoder=((4,), (4.0,)))
    with pytest.raises(ValueError, match=r"variant '8s' fuses 2 earlier pooling outputs, so the encoder needs at least 3"):
        build("fcn", in_channels=3, num_classes=2, encoder=((4,), (4,)))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_image_pooling_batch_norm_needs_two_images_in_training(framework):
    """DeepLab's image-pooling BN sees one value per channel and image: a training batch of 1 is refused
    by torch's own check, and by the same check in the Keras BatchNorm."""
    options, _, _ = SMALL["deeplabv3plus"]
    build = kt.build_model if framework == "torch" else ktf.build_model
    model = build("deeplabv3plus", in_channels=3, num_classes=2, **options)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        if framework == "torch":
            model.train()(torch.zeros(1, 3, 32, 32))
        else:
            model(np.zeros((1, 32, 32, 3), np.float32), training=True)
