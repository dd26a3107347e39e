"""The PH2 lesson's exercise networks (issue 25): ``preset="lesson-pytorch"`` / ``"lesson-tf"`` of ``segnet`` and ``unet``
are the exercises' own networks. The oracles below are those networks written as the exercises write them
(``../lesson-notes.md``: layer names, order, stock layers and their defaults), in this test only: a ``state_dict`` of
the PyTorch exercise's classes loads strictly into segparity's torch model, and weights copied layer by layer from the
TensorFlow exercise's Keras model into segparity's Keras model; outputs and BatchNorm statistics then agree, in eval
and in training mode."""

import keras
import numpy as np
import pytest
import torch
from torch import nn

from segmentation_tf import build_model as build_keras
from segmentation_torch import build_model as build_torch
from segparity.comparison.tolerance import assert_close
from segparity.weights.layout import parameter_count

PARAMETERS = {"segnet": 780_865, "unet": 974_417}
RNG = np.random.default_rng(0)


class ExerciseTorch(nn.Module):
    """The PyTorch exercise's SegNet (``unet=False``) or UNet: conv -> ReLU -> BN -> pool, align_corners upsampling,
    a sigmoid at the end; the U-Net recomputes each skip from the block's input."""

    def __init__(self, unet: bool):
        super().__init__()
        self.unet = unet
        cin = 3
        for i, cout in enumerate((16, 32, 64, 128)):
            setattr(self, f"enc_conv{i}", nn.Conv2d(cin, cout, 3, padding=1))
            setattr(self, f"act{i}", nn.ReLU())
            setattr(self, f"bn{i}", nn.BatchNorm2d(cout))
            setattr(self, f"pool{i}", nn.MaxPool2d(2, 2))
            cin = cout
        self.bottleneck_conv = nn.Conv2d(128, 256, 3, padding=1)
        ins = (384, 192, 96, 48) if unet else (256, 128, 64, 32)
        for i, (cin, cout) in enumerate(zip(ins, (128, 64, 32, 1))):
            setattr(self, f"upsample{i}", nn.UpsamplingBilinear2d(scale_factor=2))
            setattr(self, f"dec_conv{i}", nn.Conv2d(cin, cout, 3 if i < 3 else 1, padding=1 if i < 3 else 0))
            if i < 3:
                setattr(self, f"dec_act{i}", nn.ReLU())
                setattr(self, f"dec_bn{i}", nn.BatchNorm2d(cout))
        self.sigmoid = nn.Sigmoid()

    def enc(self, i, x):
        return getattr(self, f"bn{i}")(getattr(self, f"act{i}")(getattr(self, f"enc_conv{i}")(x)))

    def forward(self, x):
        e0 = self.pool0(self.enc(0, x))
        e1 = self.pool1(self.enc(1, e0))
        e2 = self.pool2(self.enc(2, e1))
        e3 = self.pool3(self.enc(3, e2))
        d = self.bottleneck_conv(e3)
        for i, (skip_block, skip_input) in enumerate(((3, e2), (2, e1), (1, e0), (0, x))):
            d = getattr(self, f"upsample{i}")(d)
            if self.unet:
                d = torch.cat((d, self.enc(skip_block, skip_input)), dim=1)
            d = getattr(self, f"dec_conv{i}")(d)
            if i < 3:
                d = getattr(self, f"dec_bn{i}")(getattr(self, f"dec_act{i}")(d))
        return self.sigmoid(d)


class ExerciseKeras(keras.Model):
    """The TensorFlow exercise's SegNet or UNet: stock Keras layers with their defaults, conv -> BN -> ReLU -> pool;
    SegNet's decoder convolves before it up-samples; the U-Net concatenates; linear output."""

    def __init__(self, unet: bool):
        super().__init__()
        self.unet = unet
        layers = keras.layers
        for i, cout in enumerate((16, 32, 64, 128)):
            setattr(self, f"enc_conv{i}", layers.Conv2D(cout, 3, padding="same", name=f"enc_conv{i}"))
            setattr(self, f"bn{i}", layers.BatchNormalization(name=f"bn{i}"))
            setattr(self, f"relu{i}", layers.ReLU(name=f"relu{i}"))
            setattr(self, f"pool{i}", layers.MaxPooling2D(name=f"pool{i}"))
        self.bottleneck_conv = layers.Conv2D(256, 3, padding="same", name="bottleneck_conv")
        for i, cout in enumerate((128, 64, 32, 1)):
            setattr(self, f"upsample{i}", layers.UpSampling2D(interpolation="bilinear", name=f"upsample{i}"))
            setattr(self, f"dec_conv{i}", layers.Conv2D(cout, 3 if i < 3 else 1, padding="same", name=f"dec_conv{i}"))
            if i < 3:
                setattr(self, f"dec_bn{i}", layers.BatchNormalization(name=f"dec_bn{i}"))
                setattr(self, f"dec_relu{i}", layers.ReLU(name=f"dec_relu{i}"))
            if unet:
                setattr(self, f"cat{i}", layers.Concatenate(axis=3, name=f"cat{i}"))

    def enc(self, i, x, training):
        return getattr(self, f"relu{i}")(getattr(self, f"bn{i}")(getattr(self, f"enc_conv{i}")(x), training=training))

    def call(self, x, training=False):
        e0 = self.pool0(self.enc(0, x, training))
        e1 = self.pool1(self.enc(1, e0, training))
        e2 = self.pool2(self.enc(2, e1, training))
        e3 = self.pool3(self.enc(3, e2, training))
        d = self.bottleneck_conv(e3)
        for i, (skip_block, skip_input) in enumerate(((3, e2), (2, e1), (1, e0), (0, x))):
            if self.unet:
                d = getattr(self, f"cat{i}")([getattr(self, f"upsample{i}")(d), self.enc(skip_block, skip_input, training)])
                d = getattr(self, f"dec_conv{i}")(d)
            elif i < 3:
                d = getattr(self, f"upsample{i}")(getattr(self, f"dec_conv{i}")(d))
            else:
                d = getattr(self, f"dec_conv{i}")(getattr(self, f"upsample{i}")(d))
            if i < 3:
                d = getattr(self, f"dec_relu{i}")(getattr(self, f"dec_bn{i}")(d, training=training))
        return d


def _randomise_statistics(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so eval mode is tested."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=gen)
                module.running_var.uniform_(0.5, 1.5, generator=gen)
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.uniform_(-0.2, 0.2, generator=gen)


@pytest.mark.parametrize("arch", ["segnet", "unet"])
@pytest.mark.parametrize("preset", ["lesson-pytorch", "lesson-tf"])
def test_every_preset_has_the_exercises_parameter_count(arch, preset):
    torch_model = build_torch(arch, preset=preset)
    keras_model = build_keras(arch, preset=preset)
    assert parameter_count(torch_model.spec) == PARAMETERS[arch]
    assert sum(p.numel() for p in torch_model.parameters() if p.requires_grad) == PARAMETERS[arch]
    assert sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights) == PARAMETERS[arch]


@pytest.mark.parametrize("arch", ["segnet", "unet"])
def test_the_pytorch_exercises_state_dict_loads_strictly_and_computes_the_same(arch):
    torch.manual_seed(0)
    exercise = ExerciseTorch(unet=arch == "unet")
    _randomise_statistics(exercise)
    model = build_torch(arch, preset="lesson-pytorch")
    model.load_state_dict(exercise.state_dict(), strict=True)
    x = torch.from_numpy(RNG.standard_normal((2, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        assert_close(model.eval()(x).numpy(), exercise.eval()(x).numpy(), quantity="eval output")
        assert_close(model.train()(x).numpy(), exercise.train()(x).numpy(), quantity="train output")
    for key, value in exercise.state_dict().items():  # the U-Net's encoder statistics moved twice in both
        assert_close(model.state_dict()[key].numpy(), value.numpy(), quantity=key)
    assert int(model.state_dict()["bn0.num_batches_tracked"]) == (2 if arch == "unet" else 1)


@pytest.mark.parametrize("arch", ["segnet", "unet"])
def test_the_tf_exercises_weights_copied_by_layer_name_compute_the_same(arch):
    keras.utils.set_random_seed(0)
    exercise = ExerciseKeras(unet=arch == "unet")
    x = RNG.standard_normal((2, 32, 32, 3)).astype(np.float32)
    exercise(x)
    model = build_keras(arch, preset="lesson-tf")
    names = [layer.name for layer in exercise.layers if layer.weights]
    for name in names:
        values = [w.numpy() for w in exercise.get_layer(name).weights]
        if "bn" in name:  # non-trivial statistics and affine parameters, so eval mode is tested
            values = [RNG.uniform(0.5, 1.5, v.shape).astype(np.float32) if k in (0, 3)
                      else RNG.uniform(-0.2, 0.2, v.shape).astype(np.float32) for k, v in enumerate(values)]
            for w, v in zip(exercise.get_layer(name).weights, values):
                w.assign(v)
        for w, v in zip(model.get_layer(name).weights, values):
            w.assign(v)
    assert sorted(names) == sorted(layer.name for layer in model.layers if layer.weights)
    assert_close(keras.ops.convert_to_numpy(model(x, training=False)),
                 keras.ops.convert_to_numpy(exercise(x, training=False)), quantity="eval output")
    assert_close(keras.ops.convert_to_numpy(model(x, training=True)),
                 keras.ops.convert_to_numpy(exercise(x, training=True)), quantity="train output")
    for name in names:
        for ours, theirs in zip(model.get_layer(name).weights, exercise.get_layer(name).weights):
            assert_close(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs), quantity=theirs.path)


def test_each_preset_sets_its_exercises_training():
    """``segparity train --preset lesson-pytorch / lesson-tf`` set the rest of each exercise (``../lesson-notes.md``);
    explicit arguments override; a sigmoid output is labelled at 0.5, the TF exercise's logits at 0.5 as it did."""
    from segparity.training.config import make_config

    fields = ("image_size", "loss", "optimizer", "lr", "lr_decay", "weight_decay", "batch_size", "epochs", "split",
              "seed", "num_classes")
    pytorch = make_config("torch", "unet", preset="lesson-pytorch", data="ph2:/data")
    assert tuple(getattr(pytorch, f) for f in fields) == (256, "bce", "adam", 1e-3, 0.0, 1e-6, 32, 30, (0.9, 0.1, 0.0),
                                                          42, 1)
    assert pytorch.label_threshold() == 0.5  # it ends in a sigmoid
    tf = make_config("tf", "segnet", preset="lesson-tf", data="ph2:/data")
    assert tuple(getattr(tf, f) for f in fields) == (256, "bce", "adam", 3e-4, 8e-9, 0.0, 64, 100, (0.8, 0.2, 0.0),
                                                      42, 1)
    assert tf.label_threshold() == 0.5  # logits > 0.5, the exercise's quirk
    fixed = make_config("tf", "segnet", preset="lesson-segparity", data="ph2:/data")
    assert fixed.label_threshold() == 0.0 and fixed.lr == 1e-3 and fixed.split == (0.9, 0.1, 0.0)
    assert make_config("tf", "segnet", preset="lesson-tf", threshold=0.0, epochs=3).label_threshold() == 0.0
    assert make_config("tf", "segnet", preset="lesson-tf", epochs=3).synthetic_classes == 2  # a lesion stand-in
    with pytest.raises(ValueError, match="threshold 0.5: only a one-channel output is thresholded; this network has 3"):
        make_config("torch", "unet", threshold=0.5)
    with pytest.raises(ValueError, match="preset 'lesson' of 'unet' is gone: 'lesson-segparity' is segparity's version"):
        make_config("torch", "unet", preset="lesson")


def _val_accuracy(framework, run, threshold):
    """Pixel accuracy of the run's final weights on its validation split, labels 1 above ``threshold``."""
    import json

    from segparity.reference import metrics
    from segparity.training.config import TrainConfig, prepare_data

    stored = json.loads((run / "config.json").read_text())
    config = TrainConfig(**{**stored, "split": tuple(stored["split"])})
    data = prepare_data(config, run / "split.json", resume=True, progress=False)
    images, masks = data.val.images, data.val.masks
    if framework == "torch":
        from segmentation_torch.train import predict_labels
        from segmentation_torch.weights import load_weights
        model = build_torch(config.arch, in_channels=3, num_classes=1, preset=config.preset)
    else:
        from segmentation_tf.train import predict_labels
        from segmentation_tf.weights import load_weights
        model = build_keras(config.arch, in_channels=3, num_classes=1, preset=config.preset)
    load_weights(model, run / "weights.safetensors")
    labels = predict_labels(model, images, threshold)
    return metrics.pixel_accuracy(metrics.confusion_matrix(labels, masks, 2)), masks.size


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("arch, preset", [("unet", "lesson-pytorch"), ("segnet", "lesson-tf")])
def test_each_exercise_trains_in_both_frameworks_and_its_metrics_label_as_it_does(tmp_path, framework, arch, preset):
    """A short run of each exercise's network and set-up (32x32, 40 synthetic images, 3 epochs): the loss falls, the
    learning-rate column follows the legacy decay, and the metrics label the sigmoid output (PyTorch) or the logit
    (TF) at 0.5, as ``label_threshold`` says: the validation accuracy is that of the final weights at 0.5."""
    from segparity import cli
    from segparity.training.config import decayed_lr
    from segparity.training.runs import read_metrics

    run = tmp_path / "run"
    assert cli.main(["train", "--framework", framework, "--arch", arch, "--preset", preset, "--image-size", "32",
                     "--synthetic-samples", "40", "--batch-size", "8", "--epochs", "3", "--split", "0.8", "0.2", "0",
                     "--quiet", "--out", str(run)]) == 0
    rows = read_metrics(run / "metrics.csv")
    assert rows[-1]["loss"] < rows[0]["loss"]
    lr, decay = (1e-3, 0.0) if preset == "lesson-pytorch" else (3e-4, 8e-9)
    # read from the optimiser at each epoch's end: the next step's rate (4 steps an epoch)
    assert [row["lr"] for row in rows] == [decayed_lr(lr, decay, 4 * epoch) for epoch in (1, 2, 3)]
    accuracy, pixels = _val_accuracy(framework, run, 0.5)
    assert abs(rows[-1]["val_accuracy"] - accuracy) <= 1 / pixels  # one pixel at most (batch composition rounding)
    assert (run / "learning_curves.png").is_file() and (run / "predictions.png").is_file()
