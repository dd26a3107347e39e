"""The discriminative loss: numpy reference == torch == Keras in value, torch == Keras in gradient, over
batches with a variable number of instances per image (none, one, several), plus a hand-computed case,
torch's gradient against finite differences, Keras inside ``tf.function``, and bad input."""

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import given
from hypothesis import strategies as st

from segmentation_tf.instance import DiscriminativeLoss as KerasLoss
from segmentation_torch.instance import DiscriminativeLoss as TorchLoss
from segparity.reference.instance import discriminative_loss
from segparity.comparison.tolerance import assert_close


def _torch(x, labels, **kwargs):
    xt = torch.from_numpy(x).requires_grad_(True)
    loss = TorchLoss(**kwargs)(xt, torch.from_numpy(labels))
    loss.backward()
    return loss.item(), xt.grad.numpy()


def _keras(x, labels, **kwargs):
    xk = tf.Variable(np.moveaxis(x, 1, -1))
    with tf.GradientTape() as tape:
        loss = KerasLoss(**kwargs)(labels.astype(np.int32), xk)
    return float(loss), np.moveaxis(tape.gradient(loss, xk).numpy(), -1, 1)


def test_hand_computed_case():
    # one image, E = 1: instance 1 at 0 and 2 (mean 1, both 1 away: pull (1 - 0.5)^2 = 0.25 each),
    # instance 2 at 1.5 (alone: no pull); means 0.5 apart: push (3 - 0.5)^2 = 6.25 for each ordered pair;
    # L = 0.25 / 2 + 2 * 6.25 / 2 + 0.001 * (1 + 1.5) / 2 = 6.37625
    x = np.array([0.0, 2.0, 1.5], np.float32).reshape(1, 1, 1, 3)
    labels = np.array([1, 1, 2]).reshape(1, 1, 3)
    assert discriminative_loss(x, labels) == pytest.approx(6.37625)
    assert _torch(x, labels)[0] == pytest.approx(6.37625) and _keras(x, labels)[0] == pytest.approx(6.37625)


@st.composite
def _batches(draw):
    n, e, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(2, 6)), draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, draw(st.integers(1, 5)), size=(n, h, w))
    if n > 1 and draw(st.booleans()):
        labels[0] = 0  # an image without instances
    scale = draw(st.sampled_from([0.3, 1.0, 3.0]))  # inside the margins, around them, beyond them
    return rng.normal(scale=scale, size=(n, e, h, w)).astype(np.float32), labels


@given(_batches(), st.sampled_from([0, None]))
def test_reference_torch_and_keras_agree(batch, background):
    x, labels = batch
    expected = discriminative_loss(x, labels, background=background)
    value_t, grad_t = _torch(x, labels, background=background)
    value_k, grad_k = _keras(x, labels, background=background)
    assert_close(value_t, expected, quantity="torch loss")
    assert_close(value_k, expected, quantity="Keras loss")
    assert np.isfinite(grad_t).all() and np.isfinite(grad_k).all()
    assert_close(grad_k, grad_t, quantity="d loss / d embedding", scale=float(np.abs(grad_t).max()) or None)


def test_torch_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(2, 3, 3, 4))).requires_grad_(True)
    labels = torch.from_numpy(rng.integers(0, 3, size=(2, 3, 4)))
    assert torch.autograd.gradcheck(lambda e: TorchLoss(delta_v=0.2, delta_d=1.0)(e, labels), (x,))


def test_keras_compiled_equals_eager_and_empty_batches_are_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)  # Keras layout
    labels = rng.integers(0, 3, size=(2, 5, 5)).astype(np.int32)
    compiled = tf.function(lambda a, b: KerasLoss()(a, b))
    assert float(compiled(labels, x)) == pytest.approx(float(KerasLoss()(labels, x)), rel=1e-6)
    empty = np.zeros_like(labels)
    assert float(compiled(empty, x)) == 0.0 and float(KerasLoss()(empty, x)) == 0.0
    value, grad = _torch(np.moveaxis(x, -1, 1).copy(), empty)
    assert value == 0.0 and not grad.any()
    assert discriminative_loss(np.moveaxis(x, -1, 1), empty) == 0.0


def test_bad_input_is_named():
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"embedding \(2, 3, 4, 4\) \(NEHW\) and instances \(2, 4, 5\) \(N, H, W\) "
                                         r"differ in W: 4 vs 5"):
        TorchLoss()(torch.from_numpy(x), torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"y_pred \(2, 4, 4, 3\) \(NHWE\) and y_true \(1, 4, 4\)"):
        KerasLoss()(np.zeros((1, 4, 4), np.int32), np.moveaxis(x, 1, -1))
    with pytest.raises(TypeError, match="instances must hold integer instance ids, got dtype float32"):
        TorchLoss()(torch.from_numpy(x), torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="y_true must hold integer instance ids, got dtype float32"):
        KerasLoss()(np.zeros((2, 4, 4), np.float32), np.moveaxis(x, 1, -1))
    with pytest.raises(ValueError, match="DiscriminativeLoss: delta_v must be > 0, got 0"):
        TorchLoss(delta_v=0)
    with pytest.raises(ValueError, match="DiscriminativeLoss: gamma must be >= 0, got -1"):
        KerasLoss(gamma=-1)
