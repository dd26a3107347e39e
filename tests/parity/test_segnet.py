"""SegNet parity: index unpooling and bilinear up-sampling, BN on and off, random widths, depths,
shapes and seeds, weights made in either framework; the full trace of ``segparity.comparison.trace`` must agree."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segparity.parity.suite import Case, lesson_case
from tests.parity.common import assert_case_agrees

EXAMPLES = int(os.environ.get("SEGPARITY_PARITY_EXAMPLES", "2"))
MAX_PIXELS = 8000  # N*H*W of the largest feature map (the float32 gradient floor; tests/parity/test_unet.py)
MIN_BN_VALUES = 16  # values per channel in the deepest BN


@st.composite
def segnet_cases(draw, upsample, batch_norm):
    stages = draw(st.integers(1, 3))
    widths = [draw(st.sampled_from([4, 8])) * 2**i for i in range(stages)]
    convs = [draw(st.integers(1, 3)) for _ in range(stages)]
    encoder = tuple((w,) * n for w, n in zip(widths, convs))
    bottleneck = tuple(draw(st.sampled_from([(), (widths[-1],), (2 * widths[-1],)]))) if upsample == "bilinear" else ()
    # decoder stage k mirrors encoder stage n-1-k; its last conv narrows to the next shallower stage's width
    decoder = tuple(tuple([widths[stages - 1 - k]] * (convs[stages - 1 - k] - 1) + [widths[max(stages - 2 - k, 0)]])
                    for k in range(stages))
    stride = 2**stages
    batch = draw(st.integers(1, 2))
    size = stride * draw(st.integers(1, max(1, 40 // stride)))
    while batch_norm and batch * (size // stride) ** 2 < MIN_BN_VALUES:
        size += stride
    if batch * size * size > MAX_PIXELS:
        batch = 1
    options = dict(encoder=encoder, bottleneck=bottleneck, decoder=decoder, upsample=upsample,
                   head_kernel_size=draw(st.sampled_from([1, 3])), batch_norm=batch_norm)
    return Case("segnet", options, batch=batch, size=size, seed=draw(st.integers(0, 2**31 - 1)),
                weights_from=draw(st.sampled_from(["torch", "tf"])), in_channels=draw(st.integers(1, 3)),
                num_classes=draw(st.integers(1, 4)), tag="hypothesis")


@pytest.mark.parametrize("upsample, batch_norm", [("unpool", True), ("unpool", False), ("bilinear", True)])
def test_segnet_parity(upsample, batch_norm):
    @settings(max_examples=EXAMPLES)
    @given(segnet_cases(upsample, batch_norm))
    def check(case):
        assert_case_agrees(case)

    check()


def test_lesson_segnet_parity():
    """The PH2 lesson's network at full width: 3 -> 16 ... 256 ... 16 -> 1 logit, bilinear, no indices."""
    assert_case_agrees(lesson_case("segnet", seed=11))
