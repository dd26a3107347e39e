"""A ReLU kink flip built on purpose, the same on every machine (pitfall ``relu_kink_flip``).

The accident the parity suite guards against: float32 rounding leaves a ReLU input a few rounding
errors above 0 in one framework and at or below 0 in the other, so one gradient path is open in one
and shut in the other, while every forward value agrees. Where a random batch puts a value that close
to a kink depends on the CPU's kernels, so a test must not wait for a seed to land there. This case
builds it exactly:

- the first batch (data seed = the case's seed) has an all-zero 3x3 patch, every channel, around
  ``PIXEL`` of image 0, so the first convolution's output there is exactly its bias;
- torch's bias of channel 0 of ``encoder.0.conv1`` is exactly 0.0: its ReLU input there is 0.0, on the
  kink (torch's float64 run sees the same 0.0), and the gradient path is shut;
- Keras's copy of that bias is ``NUDGE`` (2**-20, a few float32 rounding errors of a value near 1) above:
  the path is open. Forward outputs differ by about ``NUDGE``, far below atol.

Later batches have no zero patch: the pre-activation is far from 0 and everything agrees. ``planted``
applies this to ``segparity.parity.suite`` for one test (``pytest``'s ``monkeypatch``).
"""

from __future__ import annotations

import numpy as np

from segparity.parity import suite

BIAS = "encoder.0.conv1.bias"
PIXEL = (12, 20)
NUDGE = np.float32(2.0**-20)
CASE = suite.Case("unet", dict(base_channels=8, depth=2, padding="same", upsample="transpose", batch_norm=False),
                  batch=2, size=32, seed=7, weights_from="torch", tag="constructed ReLU kink")


def planted(monkeypatch, case: suite.Case = CASE) -> suite.Case:
    """Patch ``segparity.parity.suite`` so that ``case`` runs with the constructed kink on its first batch."""
    torch_harness, tf_harness = suite.harness("torch"), suite.harness("tf")
    real_weights, real_inputs, real_tf_trace = torch_harness.random_weights, suite.case_inputs, tf_harness.compute_trace

    def weights_on_the_kink(spec, seed):
        weights = dict(real_weights(spec, seed))
        weights[BIAS] = weights[BIAS].copy()
        weights[BIAS][0] = 0.0
        return weights

    def inputs_with_a_zero_patch(c, settings, data_seed=None):
        inputs = real_inputs(c, settings, data_seed)
        if c != case or inputs.data_seed != case.seed:
            return inputs
        images = np.array(inputs.images)
        r, col = PIXEL
        images[0, :, r - 1:r + 2, col - 1:col + 2] = 0.0
        return suite.Inputs(images, inputs.labels, inputs.data_seed)

    def keras_a_nudge_above(spec, weights, *args, **kwargs):
        weights = dict(weights)
        weights[BIAS] = weights[BIAS].copy()
        weights[BIAS][0] += NUDGE
        return real_tf_trace(spec, weights, *args, **kwargs)

    monkeypatch.setattr(torch_harness, "random_weights", weights_on_the_kink)
    monkeypatch.setattr(suite, "case_inputs", inputs_with_a_zero_patch)
    monkeypatch.setattr(tf_harness, "compute_trace", keras_a_nudge_above)
    return case
