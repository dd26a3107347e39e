"""FLOPs counted from the spec (``segparity.networks.flops``) equal ``torch.utils.flop_counter``'s count of the
built torch model, forward and training step, for every architecture and the options that change
layer sizes (valid padding, up-sampling kinds, FCN's paper crops, DeepLab's output strides)."""

import inspect

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_backward_flop

from benchmarks import cases
from benchmarks.torch_modes import _grouped_conv_backward_flop
from segmentation_torch.registry import build_model
from segparity.networks.flops import layer_macs, step_flops

SMALL = [
    ("unet", dict(in_channels=3, num_classes=2, base_channels=8, depth=3), 2, 32, 48),
    ("unet", dict(in_channels=1, num_classes=2, base_channels=4, depth=2, padding="valid", batch_norm=False), 2, 60, 60),
    ("unet", dict(in_channels=1, num_classes=2, base_channels=4, depth=2, padding="valid", upsample="bilinear",
                  convs_per_block=1), 2, 42, 46),
    ("unet", dict(preset="lesson-segparity", base_channels=4), 2, 32, 32),
    ("segnet", dict(preset="lesson-segparity"), 2, 32, 48),
    ("segnet", dict(in_channels=3, num_classes=4, encoder=((8, 8), (16,)), decoder=((8,), (8, 4)), bottleneck=(16,)),
     2, 32, 32),
    ("fcn", dict(in_channels=3, num_classes=5, variant="8s", encoder=((8,), (8,), (16,), (16,), (16,)), fc_channels=32),
     2, 64, 96),
    ("fcn", dict(in_channels=3, num_classes=5, variant="16s", encoder=((8,), (8,), (16,), (16,), (16,)), fc_channels=32,
                 padding="paper"), 1, 50, 70),
    ("fcn", dict(in_channels=3, num_classes=5, variant="32s", encoder=((8,), (8,), (16,)), fc_channels=32,
                 padding="paper", fc_kernel_size=3), 1, 40, 40),
    ("deeplabv3plus", dict(in_channels=3, num_classes=4, stem_channels=8, stage_channels=(8, 16, 16, 32),
                           aspp_channels=16, decoder_channels=16), 2, 64, 96),
    ("deeplabv3plus", dict(in_channels=3, num_classes=4, output_stride=8, stem_channels=8,
                           stage_channels=(8, 8, 16, 32), blocks_per_stage=(1, 2, 1, 1), aspp_channels=16,
                           decoder_channels=16), 2, 40, 48),
    # torchvision's models: strides that round up (37 x 29), dilation, depthwise convs, squeeze-excite, the
    # image-pooling branch on 1 x 1, the auxiliary head (both outputs are summed before the backward pass)
    ("lraspp_mobilenet_v3_large", dict(num_classes=3), 2, 37, 29),
    ("deeplabv3_mobilenet_v3_large", dict(num_classes=3, aux_loss=True), 2, 37, 29),
    pytest.param("deeplabv3_resnet50", dict(num_classes=3, aux_loss=True), 2, 37, 29,
                 marks=pytest.mark.slow),  # 7-11 s; every full benchmark run checks it too (README's time budget)
]
BENCHMARKED = [(c.arch, c.options, 2, c.size, c.size) for c in cases.FULL]


def _total(outputs) -> torch.Tensor:
    """The sum of a model's outputs: a tensor, or torchvision's dict (``"out"`` and ``"aux"``)."""
    return sum(o.sum() for o in outputs.values()) if isinstance(outputs, dict) else outputs.sum()


def profiled(model, x, task: str) -> int:
    """torch's count of one ``task`` call, grouped convolutions' weight gradients divided by their groups
    (``benchmarks.torch_modes._grouped_conv_backward_flop``; the same as torch's own count for every other layer)."""
    grouped = {torch.ops.aten.convolution_backward: _grouped_conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=grouped) as counter:
        if task == "forward":
            with torch.no_grad():
                model.eval()(x)
        else:
            _total(model.train()(x)).backward()
    return int(counter.get_total_flops())


def _name(case) -> str:
    return (case.values if hasattr(case, "values") else case)[0]


@pytest.mark.parametrize("arch, options, batch, height, width", SMALL + BENCHMARKED,
                         ids=[f"{_name(c)}-{i}" for i, c in enumerate(SMALL + BENCHMARKED)])
def test_counted_from_spec_equals_torch_profiler(arch, options, batch, height, width):
    """Forward and training step; a network with depthwise convs against torch's count with their weight gradients
    divided by the groups (the test below shows why)."""
    torch.manual_seed(0)
    model = build_model(arch, **options)
    x = torch.rand(batch, model.spec.in_channels, height, width)
    for task in ("forward", "train_step"):
        assert step_flops(model.spec, batch, height, width, task) == profiled(model, x, task), task


def test_torch_flop_counter_ignores_groups_in_the_backward_pass():
    """Why the check above divides: torch 2.13's ``conv_backward_flop`` counts a depthwise conv's *weight* gradient as
    if ``groups`` were 1 (C times too many; the change proposed in pytorch/pytorch#183405 divides it). The forward
    and the input gradient are right. If this test fails, torch has fixed it: drop the division."""
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    x = torch.rand(1, 8, 10, 10, requires_grad=True)
    forward = 2 * 10 * 10 * 8 * 9  # 2 FLOPs per multiply-add, one 3 x 3 filter per channel
    raw = inspect.unwrap(conv_backward_flop)  # torch's formula on shapes
    shapes = ([1, 8, 10, 10], [1, 8, 10, 10], [8, 1, 3, 3], None, [1, 1], [1, 1], [1, 1], False, [0, 0], 8)
    out = ([1, 8, 10, 10], [8, 1, 3, 3], None)
    assert raw(*shapes, [True, False, False], out) == forward  # the input gradient: right
    assert raw(*shapes, [False, True, False], out) == 8 * forward  # the weight gradient: 8 x
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert counts["aten.convolution"] == forward and counts["aten.convolution_backward"] == 8 * forward + forward
    grouped = {torch.ops.aten.convolution_backward: _grouped_conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=grouped) as counter:
        conv(x).sum().backward()
    assert counter.get_total_flops() == 3 * forward  # forward, input gradient, weight gradient


def test_layer_macs_by_hand():
    # lesson U-Net, 16x16 input: encoder.0.conv1 is 3 -> 16 channels, 3x3, at 16x16
    model = build_model("unet", preset="lesson-segparity")
    macs = layer_macs(model.spec, 16, 16)
    assert macs["encoder.0.conv1"] == 16 * 16 * 3 * 16 * 9
    assert macs["head"] == 16 * 16 * 16 * 1
    assert list(macs)[0] == "encoder.0.conv1" and len(macs) == 10  # 4 + 1 + 4 convs and the head


def test_a_size_the_network_cannot_take_is_named():
    with pytest.raises(ValueError, match=r"height 100 cannot go through unet\(depth=4, padding='same'\): it needs "
                                         r"height and width divisible by 2\*\*depth = 16"):
        step_flops(build_model("unet", preset="lesson-segparity").spec, 1, 100, 96, "forward")


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="task must be one of"):
        step_flops(build_model("unet", preset="lesson-segparity").spec, 1, 16, 16, "backward")


@pytest.mark.parametrize("arch", ["segnet", "unet"])
@pytest.mark.parametrize("preset", ["lesson-pytorch", "lesson-tf"])
def test_lesson_exercise_networks_count_as_torch_counts(arch, preset):
    """The lesson exercises' networks: the TF exercise's SegNet convolves before it up-samples (its decoder convs run at
    half the side), and the U-Net's recomputed skips run every encoder conv twice (``call_counts``)."""
    model = build_model(arch, preset=preset).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 64, 48))
    convs = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
    assert convs == 2 * sum(layer_macs(model.spec, 64, 48).values())
