"""BCE and CE: torch == numpy reference == Keras, in value and gradient; bad input named."""

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from segmentation_tf import losses as tf_losses
from segmentation_torch import losses as torch_losses
from segparity.reference import losses as reference
from segparity.comparison.tolerance import assert_close


@st.composite
def problems(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, c, h, w)) * draw(st.sampled_from([0.1, 1.0, 10.0]))).astype(np.float32)
    labels = rng.integers(0, c, size=(n, h, w))
    ignore = draw(st.sampled_from([None, 255, -1]))
    if ignore is not None:
        labels[rng.random(labels.shape) < draw(st.floats(0.0, 1.0))] = ignore
    weights = draw(st.one_of(st.none(), st.lists(st.floats(0.1, 3.0), min_size=c, max_size=c)))
    return logits, labels, ignore, weights


def _torch_ce(logits, labels, ignore, weights):
    x = torch.from_numpy(logits).requires_grad_(True)
    loss = torch_losses.CrossEntropyLoss(class_weights=weights, ignore_index=ignore)(x, torch.from_numpy(labels))
    loss.backward()
    return loss.item(), x.grad.numpy()


def _tf_ce(logits, labels, ignore, weights):
    x = tf.constant(np.moveaxis(logits, 1, -1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf_losses.CrossEntropyLoss(class_weights=weights, ignore_index=ignore)(tf.constant(labels), x)
    return float(loss), np.moveaxis(tape.gradient(loss, x).numpy(), -1, 1)


@given(problems())
def test_cross_entropy_agrees_three_ways(problem):
    logits, labels, ignore, weights = problem
    expected = reference.cross_entropy(logits, labels, class_weights=weights, ignore_index=ignore)
    value_t, grad_t = _torch_ce(*problem)
    value_k, grad_k = _tf_ce(*problem)
    assert np.isfinite(value_t) and np.isfinite(value_k)
    assert_close(value_t, expected, quantity="torch CE vs numpy")
    assert_close(value_k, expected, quantity="keras CE vs numpy")
    scale = float(np.abs(grad_t).max()) or None
    assert_close(grad_k, grad_t, quantity="d CE / d logits", scale=scale)


@given(problems())
def test_torch_cross_entropy_equals_functional_cross_entropy(problem):
    logits, labels, ignore, weights = problem
    counted = labels != ignore if ignore is not None else np.ones(labels.shape, bool)
    if not counted.any():
        return  # F.cross_entropy gives NaN here; ours gives 0.0 (test_all_ignored_is_zero_with_zero_gradient)
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels),
                               weight=None if weights is None else torch.tensor(weights, dtype=torch.float32),
                               ignore_index=-100 if ignore is None else ignore)
    assert_close(_torch_ce(*problem)[0], expected.item(), quantity="ours vs F.cross_entropy")


@given(st.integers(0, 2**32 - 1), st.sampled_from([0.1, 1.0, 30.0]))
def test_bce_agrees_three_ways(seed, scale):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(2, 3, 5, 4)) * scale).astype(np.float32)
    target = (rng.random(logits.shape) < 0.4).astype(np.float32)
    x_t = torch.from_numpy(logits).requires_grad_(True)
    loss_t = torch_losses.BinaryCrossEntropyLoss(mode="multilabel")(x_t, torch.from_numpy(target))
    loss_t.backward()
    x_k = tf.constant(np.moveaxis(logits, 1, -1))
    with tf.GradientTape() as tape:
        tape.watch(x_k)
        loss_k = tf_losses.BinaryCrossEntropyLoss(mode="multilabel")(tf.constant(np.moveaxis(target, 1, -1)), x_k)
    expected = reference.bce_with_logits(logits, target)
    assert_close(loss_t.item(), expected, quantity="torch BCE vs numpy")
    assert_close(float(loss_k), expected, quantity="keras BCE vs numpy")
    grad_k = np.moveaxis(tape.gradient(loss_k, x_k).numpy(), -1, 1)
    assert_close(grad_k, x_t.grad.numpy(), quantity="d BCE / d logits", scale=float(np.abs(x_t.grad.numpy()).max()))


def test_all_ignored_is_zero_with_zero_gradient():
    logits = np.random.default_rng(0).normal(size=(1, 3, 2, 2)).astype(np.float32)
    labels = np.full((1, 2, 2), 255)
    value_t, grad_t = _torch_ce(logits, labels, 255, None)
    value_k, grad_k = _tf_ce(logits, labels, 255, None)
    assert value_t == value_k == reference.cross_entropy(logits, labels, ignore_index=255) == 0.0
    assert not grad_t.any() and not grad_k.any()


def _both_ce(logits, labels, ignore=None):
    """Call both frameworks' CE; return the two exceptions raised."""
    errors = []
    for call in (lambda: torch_losses.CrossEntropyLoss(ignore_index=ignore)(torch.from_numpy(logits), torch.from_numpy(labels)),
                 lambda: tf_losses.CrossEntropyLoss(ignore_index=ignore)(labels, np.moveaxis(logits, 1, -1))):
        with pytest.raises((ValueError, TypeError)) as exc:
            call()
        errors.append(str(exc.value))
    return errors


def test_labels_out_of_range_named():
    logits = np.zeros((1, 3, 2, 2), np.float32)
    for message in _both_ce(logits, np.array([[[0, 1], [3, 0]]]), ignore=255):
        assert "holds label 3, outside the valid range 0..2 or ignore_index=255" in message
    for message in _both_ce(logits, np.array([[[0, -1], [1, 0]]])):
        assert "holds label -1, outside the valid range 0..2" in message


def test_float_labels_named():
    for message in _both_ce(np.zeros((1, 3, 2, 2), np.float32), np.zeros((1, 2, 2), np.float32)):
        assert "must hold integer class labels, got dtype float32" in message


def test_shape_mismatch_named():
    for message in _both_ce(np.zeros((1, 3, 2, 2), np.float32), np.zeros((1, 2, 3), np.int64)):
        assert "must be an integer label map (N, H, W)" in message and "expected (1, 2, 2), got (1, 2, 3)" in message


def test_nan_logits_named():
    logits = np.zeros((1, 3, 2, 2), np.float32)
    logits[0, 1, 0, 0] = np.nan
    for message in _both_ce(logits, np.zeros((1, 2, 2), np.int64)):
        assert "contains NaN or infinity" in message
