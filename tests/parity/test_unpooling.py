"""Max-pooling with indices and max-unpooling: torch's ``max_pool2d(return_indices=True)`` /
``max_unpool2d`` against the Keras side's ``tf.nn.max_pool_with_argmax`` + scatter, and both against
the numpy reference in ``segparity.reference.unpooling``. Ties, odd sizes and batches > 1 are drawn on purpose."""

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segmentation_tf import layers as keras_layers
from segmentation_torch import layers as torch_layers
from segparity.reference import unpooling

# Values from a 3-element set make most windows tie; the float case checks the ordinary path.
TIED = st.sampled_from([0.0, 1.0, 2.0])


@st.composite
def batches(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(2, 9)), draw(st.integers(2, 9)))
    elements = draw(st.sampled_from(["tied", "float"]))
    # subnormal floats excluded: TensorFlow's CPU kernels flush them to zero (see the pitfall test below)
    strategy = TIED if elements == "tied" else st.floats(-4, 4, width=32, allow_subnormal=False)
    return draw(arrays(np.float32, shape, elements=strategy))


def _torch_pool_unpool(x):
    t = torch.from_numpy(x)
    values, indices = torch_layers.max_pool_with_indices(t)
    return values.numpy(), indices.numpy(), torch_layers.max_unpool(values, indices, x.shape[2], x.shape[3]).numpy()


def _keras_pool_unpool(x):
    nhwc = tf.constant(np.transpose(x, (0, 2, 3, 1)))
    values, indices = keras_layers.max_pool_with_indices(nhwc)
    unpooled = keras_layers.max_unpool(values, indices, x.shape[2], x.shape[3])
    return (np.transpose(values.numpy(), (0, 3, 1, 2)), indices.numpy(),
            np.transpose(unpooled.numpy(), (0, 3, 1, 2)))


@settings(max_examples=60, deadline=None)
@given(batches())
def test_indices_values_and_unpooling_agree_with_ties_odd_sizes_and_batches(x):
    ref_values, ref_indices = unpooling.max_pool_with_indices(x)
    ref_unpooled = unpooling.max_unpool(ref_values, ref_indices, x.shape[2], x.shape[3])
    t_values, t_indices, t_unpooled = _torch_pool_unpool(x)
    k_values, k_indices, k_unpooled = _keras_pool_unpool(x)
    np.testing.assert_array_equal(t_indices, ref_indices)
    np.testing.assert_array_equal(unpooling.tf_to_torch_indices(k_indices, x.shape[2], x.shape[3]), ref_indices)
    for values in (t_values, k_values):
        np.testing.assert_array_equal(values, ref_values)
    for unpooled in (t_unpooled, k_unpooled):
        np.testing.assert_array_equal(unpooled, ref_unpooled)


@settings(max_examples=20, deadline=None)
@given(batches(), st.integers(0, 2**31 - 1))
def test_gradients_flow_back_through_the_same_argmax(x, seed):
    """d/dx of sum(w * unpool(pool(x))): 1 * w at each window's argmax (the first maximum on a tie), 0 elsewhere."""
    w = np.random.default_rng(seed).normal(size=x.shape).astype(np.float32)
    t = torch.from_numpy(x).requires_grad_(True)
    values, indices = torch_layers.max_pool_with_indices(t)
    (torch_layers.max_unpool(values, indices, x.shape[2], x.shape[3]) * torch.from_numpy(w)).sum().backward()
    nhwc = tf.Variable(np.transpose(x, (0, 2, 3, 1)))
    with tf.GradientTape() as tape:
        k_values, k_indices = keras_layers.max_pool_with_indices(nhwc)
        out = keras_layers.max_unpool(k_values, k_indices, x.shape[2], x.shape[3])
        loss = tf.reduce_sum(out * np.transpose(w, (0, 2, 3, 1)))
    keras_grad = np.transpose(tape.gradient(loss, nhwc).numpy(), (0, 3, 1, 2))
    _, ref_indices = unpooling.max_pool_with_indices(x)
    mask = unpooling.max_unpool(np.ones(ref_indices.shape, np.float32), ref_indices, x.shape[2], x.shape[3])
    np.testing.assert_array_equal(t.grad.numpy(), w * mask)
    np.testing.assert_array_equal(keras_grad, w * mask)


def test_pitfall_max_unpool_indices():
    """Naive port: take TensorFlow's argmax (its default, ``include_batch_in_index=False``) as torch's
    indices. TF counts ``(row * W + col) * C + c`` in NHWC order, torch ``row * W + col`` per channel
    plane, so the naive unpooling puts values in the wrong places as soon as C > 1. Converting with
    ``segparity.reference.unpooling.tf_to_torch_indices`` (the fixed port uses the batch-flat indices directly)
    places them exactly where torch does."""
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6)).astype(np.float32)
    values, torch_indices, torch_unpooled = _torch_pool_unpool(x)
    _, naive = tf.nn.max_pool_with_argmax(np.transpose(x, (0, 2, 3, 1)), 2, 2, "VALID")
    naive = np.transpose(naive.numpy(), (0, 3, 1, 2))
    naive_unpooled = np.zeros((2, 3, 36), np.float32)
    np.put_along_axis(naive_unpooled, np.minimum(naive.reshape(2, 3, -1), 35), values.reshape(2, 3, -1), axis=-1)
    assert not np.array_equal(naive, torch_indices)
    assert np.abs(naive_unpooled.reshape(x.shape) - torch_unpooled).max() > 1.0
    _, fixed_indices, fixed_unpooled = _keras_pool_unpool(x)
    np.testing.assert_array_equal(unpooling.tf_to_torch_indices(fixed_indices, 6, 6), torch_indices)
    np.testing.assert_array_equal(fixed_unpooled, torch_unpooled)


@pytest.mark.parametrize("height, width", [(5, 7), (4, 4), (3, 2)])
def test_unpooling_restores_odd_sizes_with_a_zero_last_row(height, width):
    x = np.arange(2 * 2 * height * width, dtype=np.float32).reshape(2, 2, height, width)
    _, _, unpooled = _keras_pool_unpool(x)
    assert unpooled.shape == x.shape
    if height % 2:
        assert not unpooled[:, :, -1].any()  # floor pooling never picks the last row of an odd map


def test_pitfall_subnormals_are_zero_in_tensorflow():
    """Found by the property test above: TensorFlow's CPU kernels run with denormals-are-zero, torch's
    do not. A window holding 0 and a subnormal 1.6e-40 is a tie in TensorFlow (argmax: the first
    element) and not in torch (argmax: the subnormal). Real activations are never that small; the
    property tests draw normal floats, and this test keeps the difference on record."""
    x = np.array([[[[0.0, 1.6e-40], [0.0, 0.0]]]], np.float32)
    _, torch_indices, _ = _torch_pool_unpool(x)
    _, keras_indices, _ = _keras_pool_unpool(x)
    assert torch_indices.item() == 1
    assert unpooling.tf_to_torch_indices(keras_indices, 2, 2).item() == 0
