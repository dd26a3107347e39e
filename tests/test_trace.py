"""The float32 floor: measured per quantity, and how it sets each row's tolerance."""

import numpy as np

from segparity.comparison.tolerance import ATOL
from segparity.comparison.trace import FLOOR_LIMIT, compare_traces, float32_floors


def _trace(logits, grad):
    return {"logits_eval": np.asarray(logits, np.float64), "grad_input_bce": np.asarray(grad, np.float64)}


def test_floors_are_absolute_for_values_and_scaled_for_gradients():
    exact = _trace([1.0, 2.0], [10.0, -20.0])
    rounded = _trace([1.0 + 3e-6, 2.0], [10.0, -20.0 + 4e-4])
    floors = float32_floors(rounded, exact)
    assert np.isclose(floors["logits_eval"], 3e-6)
    assert np.isclose(floors["grad_input_bce"], 4e-4 / 20.0)  # divided by max |gradient|


def test_floor_widens_atol_by_twice_itself_up_to_the_limit():
    reference = _trace([0.0], [1.0])  # 0: the rtol term adds nothing
    other = _trace([2e-5], [1.0])
    assert not compare_traces(other, reference)["logits_eval"][0].passed  # 2e-5 > atol 1e-5
    row = compare_traces(other, reference, floors={"logits_eval": 6e-6})["logits_eval"][0]
    assert row.passed and np.isclose(row.atol, ATOL + 1.2e-5)
    forward = compare_traces(other, reference, floors={"logits_eval": 2 * FLOOR_LIMIT})["logits_eval"][0]
    assert forward.passed  # forward values are continuous: any floor is rounding


def test_gradient_floors_beyond_the_limit_widen_nothing():
    reference = _trace([0.0], [1.0, 0.0])
    other = _trace([0.0], [1.0, 2e-5])  # 2e-5 of the gradient's scale
    beyond = compare_traces(other, reference, floors={"grad_input_bce": 2 * FLOOR_LIMIT})["grad_input_bce"][0]
    assert not beyond.passed and beyond.atol == ATOL  # a kink crossing, not rounding
    within = compare_traces(other, reference, floors={"grad_input_bce": 6e-6})["grad_input_bce"][0]
    assert within.passed
