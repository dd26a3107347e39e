"""FCN parity: 32s, 16s and 8s, padded and with the paper's cropping, BN on and off, random widths,
depths, shapes and seeds; the full trace of ``segparity.comparison.trace`` must agree."""

import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from segparity.networks.specs import make_spec
from segparity.parity.suite import Case
from tests.parity.common import assert_case_agrees

EXAMPLES = int(os.environ.get("SEGPARITY_PARITY_EXAMPLES", "2"))
MAX_PIXELS = 8000  # N*H*W of the largest feature map (the float32 gradient floor; tests/parity/test_unet.py)
MAX_PIXELS_PAPER = 60000  # the paper's padding makes conv1 maps (H + 198)^2: ~50k pixels at 24x24 (measured to pass)
MIN_BN_VALUES = 16


def _fc6_size(spec, size: int) -> int:
    """Height of fc6's output (where the deepest BN runs) for an input of ``size``."""
    s = size + 198 if spec.padding == "paper" else size
    for _ in spec.encoder:
        s = -(-s // 2)  # ceil-mode pooling
    return s - spec.fc_kernel_size + 1 if spec.padding == "paper" else s


@st.composite
def fcn_cases(draw, variant, padding, batch_norm):
    stages = draw(st.integers(VARIANTS_MIN_STAGES[variant], 5))
    encoder = tuple((draw(st.sampled_from([4, 8])),) * draw(st.integers(1, 2)) for _ in range(stages))
    fc_kernel = draw(st.sampled_from([1, 3] if padding == "same" or batch_norm else [3, 7]))
    options = dict(variant=variant, encoder=encoder, fc_channels=draw(st.sampled_from([8, 16])),
                   fc_kernel_size=fc_kernel, padding=padding, batch_norm=batch_norm)
    spec = make_spec("fcn", in_channels=1, num_classes=1, **options)
    if padding == "same":
        batch = draw(st.integers(1, 2))
        sizes = [s for s in range(1, 65) if spec.output_size(s) and batch * s * s <= MAX_PIXELS]
    else:
        batch = 1
        sizes = [s for s in range(8, 29) if spec.output_size(s) and (s + 198) ** 2 <= MAX_PIXELS_PAPER]
    if batch_norm:  # fc6/fc7's BN sees batch * fc6_size**2 values per channel (tests/parity/test_unet.py)
        sizes = [s for s in sizes if batch * _fc6_size(spec, s) ** 2 >= MIN_BN_VALUES]
    assume(sizes)
    return Case("fcn", options, batch=batch, size=draw(st.sampled_from(sizes)), seed=draw(st.integers(0, 2**31 - 1)),
                weights_from=draw(st.sampled_from(["torch", "tf"])), in_channels=draw(st.integers(1, 3)),
                num_classes=draw(st.integers(1, 4)), tag="hypothesis")


VARIANTS_MIN_STAGES = {"32s": 1, "16s": 2, "8s": 3}


@pytest.mark.parametrize("variant, padding, batch_norm", [
    ("32s", "same", False), ("16s", "same", True), ("8s", "same", False), ("8s", "paper", False),
    ("16s", "paper", True),
])
def test_fcn_parity(variant, padding, batch_norm):
    @settings(max_examples=EXAMPLES)
    @given(fcn_cases(variant, padding, batch_norm))
    def check(case):
        assert_case_agrees(case)

    check()
