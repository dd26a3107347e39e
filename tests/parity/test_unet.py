"""U-Net parity: every configuration, random shapes and seeds, weights made in either framework.

Each example runs the full trace of ``segparity.comparison.trace`` (eval/train logits, BCE and CE, input and weight
gradients, BN running statistics, one SGD and one Adam step) in torch and Keras and requires every
tensor to agree at rtol 1e-4, atol 1e-5 plus twice torch's float32 floor (gradients normalised; ``segparity.comparison.trace``).
"""

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segparity.networks.geometry import unet_bottleneck_size, unet_output_size
from segparity.reference.unet import unet_forward
from segparity.parity.suite import Case, harness
from tests.parity.common import assert_case_agrees

CONFIGS = list(itertools.product(("same", "valid"), ("transpose", "bilinear"), (True, False)))
CONFIGS += [("same", "resize", True), ("valid", "resize", False)]  # the lesson's up-sampling
# Examples per configuration; raise it for a thorough local sweep (each example takes ~0.5 s).
EXAMPLES = int(os.environ.get("SEGPARITY_PARITY_EXAMPLES", "2"))
MAX_PIXELS = 8000  # N*H*W of the largest feature map: keeps the float32 gradient floor under atol / 2
MIN_BN_VALUES = 16  # values per channel in the bottleneck's BN (see unet_cases)


@st.composite
def unet_cases(draw, padding, upsample, batch_norm):
    depth = draw(st.integers(1, 2))
    convs = draw(st.sampled_from([1, 2]))
    if padding == "same":
        sizes = [2**depth * k for k in range(1, 9) if 2**depth * k <= 40]
    else:
        sizes = [s for s in range(18, 70) if unet_output_size(s, depth, "valid", convs)]
    size = draw(st.sampled_from(sizes))
    batch = draw(st.integers(1, 2))
    # Training-mode BN over n values per channel: n = 1 is refused (torch raises), n = 2 maps any input
    # to exactly +-gamma + beta (true input gradient 0, so both frameworks return rounding noise), and
    # small n stays ill-conditioned; parity is asserted from MIN_BN_VALUES values per channel up.
    if batch_norm and batch * unet_bottleneck_size(size, depth, padding, convs) ** 2 < MIN_BN_VALUES:
        size = next(s for s in sizes if unet_bottleneck_size(s, depth, padding, convs) ** 2 * batch >= MIN_BN_VALUES)
    if batch * size * size > MAX_PIXELS:
        batch = 1
    options = dict(base_channels=draw(st.sampled_from([4, 8])), depth=depth, padding=padding,
                   upsample=upsample, batch_norm=batch_norm, convs_per_block=convs)
    return Case("unet", options, batch=batch, size=size, seed=draw(st.integers(0, 2**31 - 1)),
                weights_from=draw(st.sampled_from(["torch", "tf"])), in_channels=draw(st.integers(1, 3)),
                num_classes=draw(st.integers(1, 4)))


@pytest.mark.parametrize("padding, upsample, batch_norm", CONFIGS)
def test_unet_parity(padding, upsample, batch_norm):
    @settings(max_examples=EXAMPLES)
    @given(unet_cases(padding, upsample, batch_norm))
    def check(case):
        # the numpy float64 forward pass is the third opinion on the logits
        weights = harness(case.weights_from).random_weights(case.spec(), case.seed)
        assert_case_agrees(case, reference_logits=lambda images: {
            mode: unet_forward(case.spec(), weights, images, training=mode == "train") for mode in ("eval", "train")})

    check()
