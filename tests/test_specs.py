"""Specs, option checking and the spatial-size rules of shared/."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segparity.networks.geometry import (center_crop_labels, nearest_valid_sizes, smallest_valid_size, unet_bottleneck_size,
                             unet_output_size)
from segparity.weights.layout import expected_tensors, parameter_count
from segparity.networks.specs import UNetSpec, list_models, make_spec, spec_differences, spec_from_dict, spec_to_dict

PAPER = dict(in_channels=1, num_classes=2, base_channels=64, depth=4, padding="valid", upsample="transpose",
             batch_norm=False)


def test_paper_unet_maps_572_to_388():
    assert unet_output_size(572, 4, "valid") == 388


def test_bottleneck_sizes():
    assert unet_bottleneck_size(572, 4, "valid") == 28  # the paper's 30x30 -> 28x28 bottom of the U
    assert unet_bottleneck_size(64, 3, "same") == 8
    assert unet_bottleneck_size(63, 3, "same") is None


def test_paper_unet_parameter_count():
    # 31,030,658: the count usually quoted for the 2015 network with 2 output classes.
    assert parameter_count(make_spec("unet", **PAPER)) == 31_030_658


def test_same_padding_needs_divisibility():
    assert unet_output_size(256, 4, "same") == 256
    assert unet_output_size(250, 4, "same") is None
    assert nearest_valid_sizes(250, 4, "same") == [240, 256]


def test_valid_padding_smallest_size_and_neighbours():
    assert smallest_valid_size(4, "valid") == 188  # 188 -> 4
    assert unet_output_size(188, 4, "valid") == 4
    assert unet_output_size(571, 4, "valid") is None
    assert 572 in nearest_valid_sizes(571, 4, "valid")


@given(st.integers(1, 600), st.integers(1, 4), st.sampled_from(["same", "valid"]))
def test_nearest_valid_sizes_are_valid(size, depth, padding):
    for candidate in nearest_valid_sizes(size, depth, padding):
        assert unet_output_size(candidate, depth, padding) is not None


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match=r"unknown model name .unett.; known models: deeplabv3_mobilenet_v3_large, .*, segnet, unet$"):
        make_spec("unett", in_channels=3, num_classes=2)


def test_unknown_option_lists_known():
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'base_channel'.*known options: base_channels, depth"):
        make_spec("unet", in_channels=3, num_classes=2, base_channel=8)


@pytest.mark.parametrize("option, value, error", [
    ("padding", "SAME", ValueError), ("upsample", "nearest", ValueError), ("depth", 0, ValueError),
    ("base_channels", 8.0, TypeError), ("batch_norm", 1, TypeError), ("bn_momentum", 0.9 + 0.2, ValueError),
])
def test_bad_option_values_name_the_option(option, value, error):
    with pytest.raises(error, match=option):
        make_spec("unet", in_channels=3, num_classes=2, **{option: value})


def test_spec_dict_round_trip_and_differences():
    spec = make_spec("unet", in_channels=3, num_classes=4, depth=2, padding="valid")
    assert spec_from_dict(spec_to_dict(spec)) == spec
    other = make_spec("unet", in_channels=3, num_classes=4, depth=3, padding="valid")
    assert spec_differences(spec, other) == ["depth: expected 2, found 3"]


def test_expected_tensors_follow_the_layer_table():
    spec = UNetSpec(in_channels=3, num_classes=5, base_channels=4, depth=1, batch_norm=True)
    tensors = expected_tensors(spec)
    assert tensors["encoder.0.conv1.weight"] == (4, 3, 3, 3)  # OIHW
    assert tensors["decoder.0.up.weight"] == (8, 4, 2, 2)  # transposed conv: IOHW
    assert "decoder.0.up.bias" not in tensors  # BN follows: bias would be dead (docs/pitfalls.md)
    assert tensors["head.weight"] == (5, 4, 1, 1)
    assert list_models() == ["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet101", "deeplabv3_resnet50",
        "deeplabv3plus", "fcn", "fcn_resnet101", "fcn_resnet50", "lesson_segnet", "lesson_unet", "lraspp_mobilenet_v3_large",
        "segnet", "unet"]


def test_center_crop_labels_matches_network_crop():
    import numpy as np

    labels = np.arange(2 * 7 * 9).reshape(2, 7, 9)
    out = center_crop_labels(labels, 4, 4)
    assert out.shape == (2, 4, 4) and out[0, 0, 0] == labels[0, 1, 2]
