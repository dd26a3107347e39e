"""The kink probe: margin maths on known arrays, and the two frameworks' recorders against numpy."""

import numpy as np

from segparity.comparison import kinks
from segparity.parity import suite
from segparity.reference.unet import kink_margin as numpy_kink_margin


def test_pool_gap_sees_partial_windows_and_ignores_all_zero_ties():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 2, 2] = 5.0  # alone in the partial corner window of ceil-mode pooling: gap 5 - (-inf)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 2.0, 1.5  # gap 0.5
    assert kinks.pool_gap(x) == 0.5
    assert kinks.pool_gap(np.zeros((1, 1, 4, 4))) == float("inf")


def test_kink_margin_is_distance_over_float32_error():
    z64 = np.array([1.0, -0.5, 2.0**-20])
    z32 = np.array([1.0, -0.5 + 2.0**-23, 2.0**-20], np.float32)  # largest float32 error 2**-23
    assert kinks.kink_margin([(z64, z32)], []) == 8.0  # nearest kink 2**-20 away: 8 errors


def test_torch_and_keras_probes_agree_with_the_numpy_reference():
    """Three independent float64-vs-float32 runs (numpy, torch, Keras) see the same nearest kink, within
    the factor their different summation orders allow."""
    for case in suite.unet_cases(seed=3)[:4]:
        spec = case.spec()
        weights = suite.harness(case.weights_from).random_weights(spec, case.seed)
        images = suite.case_inputs(case, suite.default_settings(case)).images
        reference = numpy_kink_margin(spec, weights, images)
        for framework in suite.FRAMEWORKS:
            margin = suite.harness(framework).kink_margin(spec, weights, images)
            assert reference / 3 < margin < reference * 3, (case.label(), framework, margin, reference)
