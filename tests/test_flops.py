"""FLOPs counted from the spec (``segparity.networks.flops``) equal ``torch.utils.flop_counter``'s count of the
built torch model, forward and training step, for every architecture and the options that change
layer sizes (valid padding, up-sampling kinds, FCN's paper crops, DeepLab's output strides)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import cases
from segmentation_torch.registry import build_model
from segparity.networks.flops import layer_macs, step_flops

SMALL = [
    ("unet", dict(in_channels=3, num_classes=2, base_channels=8, depth=3), 2, 32, 48),
    ("unet", dict(in_channels=1, num_classes=2, base_channels=4, depth=2, padding="valid", batch_norm=False), 2, 60, 60),
    ("unet", dict(in_channels=1, num_classes=2, base_channels=4, depth=2, padding="valid", upsample="bilinear",
                  convs_per_block=1), 2, 42, 46),
    ("unet", dict(preset="lesson", base_channels=4), 2, 32, 32),
    ("segnet", dict(preset="lesson"), 2, 32, 48),
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
]
BENCHMARKED = [(c.arch, c.options, 2, c.size, c.size) for c in cases.FULL]


def profiled(model, x, task: str) -> int:
    with FlopCounterMode(display=False) as counter:
        if task == "forward":
            with torch.no_grad():
                model.eval()(x)
        else:
            model.train()(x).sum().backward()
    return int(counter.get_total_flops())


@pytest.mark.parametrize("arch, options, batch, height, width", SMALL + BENCHMARKED,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SMALL + BENCHMARKED)])
def test_counted_from_spec_equals_torch_profiler(arch, options, batch, height, width):
    torch.manual_seed(0)
    model = build_model(arch, **options)
    x = torch.rand(batch, model.spec.in_channels, height, width)
    for task in ("forward", "train_step"):
        assert step_flops(model.spec, batch, height, width, task) == profiled(model, x, task), task


def test_layer_macs_by_hand():
    # lesson U-Net, 16x16 input: encoder.0.conv1 is 3 -> 16 channels, 3x3, at 16x16
    model = build_model("unet", preset="lesson")
    macs = layer_macs(model.spec, 16, 16)
    assert macs["encoder.0.conv1"] == 16 * 16 * 3 * 16 * 9
    assert macs["head"] == 16 * 16 * 16 * 1
    assert list(macs)[0] == "encoder.0.conv1" and len(macs) == 10  # 4 + 1 + 4 convs and the head


def test_a_size_the_network_cannot_take_is_named():
    with pytest.raises(ValueError, match=r"height 100 cannot go through unet\(depth=4, padding='same'\): it needs "
                                         r"height and width divisible by 2\*\*depth = 16"):
        step_flops(build_model("unet", preset="lesson").spec, 1, 100, 96, "forward")


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="task must be one of"):
        step_flops(build_model("unet", preset="lesson").spec, 1, 16, 16, "backward")
