"""The numpy metric reference (``segparity.reference.metrics``): properties, scikit-image cross-checks, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.metrics import adapted_rand_error as skimage_are
from skimage.metrics import contingency_table

from segparity.reference import metrics

IGNORE = 255


@st.composite
def label_pairs(draw, ignore=True):
    num_classes = draw(st.integers(1, 5))
    shape = draw(st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)))
    pred = draw(arrays(np.int64, shape, elements=st.integers(0, num_classes - 1)))
    target_values = st.integers(0, num_classes - 1)
    if ignore:
        target_values = st.one_of(target_values, st.just(IGNORE))
    target = draw(arrays(np.int64, shape, elements=target_values))
    return pred, target, num_classes


@given(label_pairs())
def test_confusion_matrix_counts_every_kept_pixel_once(pair):
    pred, target, c = pair
    cm = metrics.confusion_matrix(pred, target, c, ignore_index=IGNORE)
    assert cm.shape == (c, c) and cm.dtype == np.int64
    assert cm.sum() == np.count_nonzero(target != IGNORE)
    for t in range(c):
        for p in range(c):
            assert cm[t, p] == np.count_nonzero((target == t) & (pred == p))


@given(label_pairs(ignore=False))
def test_confusion_matrix_equals_skimage_contingency_table(pair):
    pred, target, c = pair
    table = contingency_table(target, pred, normalize=False, sparse_type="array").toarray()
    cm = metrics.confusion_matrix(pred, target, c)
    np.testing.assert_array_equal(cm[:table.shape[0], :table.shape[1]], table)
    assert cm[table.shape[0]:].sum() == cm[:, table.shape[1]:].sum() == 0


@given(label_pairs(ignore=False))
def test_adapted_rand_error_equals_skimage(pair):
    pred, target, c = pair
    cm = metrics.confusion_matrix(pred, target, c)
    ours = metrics.adapted_rand_error(cm)
    with np.errstate(invalid="ignore", divide="ignore"):  # one-pixel maps: 0/0 in scikit-image too
        theirs = skimage_are(target, pred, ignore_labels=())
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, equal_nan=True)


@given(label_pairs())
def test_a_map_against_itself_scores_one(pair):
    _, target, c = pair
    pred = np.where(target == IGNORE, 0, target)
    cm = metrics.confusion_matrix(pred, target, c, ignore_index=IGNORE)
    present = np.isin(np.arange(c), target[target != IGNORE])
    iou, dice = metrics.iou_per_class(cm), metrics.dice_per_class(cm)
    np.testing.assert_array_equal(iou[present], 1.0)
    np.testing.assert_array_equal(dice[present], 1.0)
    assert np.isnan(iou[~present]).all()  # absent from target and prediction: nothing to score
    if present.any():
        assert metrics.mean_iou(cm) == metrics.pixel_accuracy(cm) == 1.0
    else:
        assert np.isnan(metrics.mean_iou(cm)) and np.isnan(metrics.pixel_accuracy(cm))


@given(label_pairs(), st.randoms(use_true_random=False))
def test_metrics_ignore_pixel_order_and_dice_follows_iou(pair, rng):
    pred, target, c = pair
    order = list(range(pred.size))
    rng.shuffle(order)
    cm = metrics.confusion_matrix(pred, target, c, ignore_index=IGNORE)
    shuffled = metrics.confusion_matrix(pred.ravel()[order], target.ravel()[order], c, ignore_index=IGNORE)
    np.testing.assert_array_equal(cm, shuffled)
    iou = metrics.iou_per_class(cm)
    np.testing.assert_allclose(metrics.dice_per_class(cm), 2 * iou / (1 + iou), rtol=1e-12, equal_nan=True)
    precision, recall = metrics.precision_recall(cm)
    assert np.all((np.nan_to_num(precision) >= 0) & (np.nan_to_num(precision) <= 1))
    assert np.all((np.nan_to_num(recall) >= 0) & (np.nan_to_num(recall) <= 1))


def test_known_values():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])
    cm = metrics.confusion_matrix(pred, target, 3, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 3, 0], [1, 0, 1]])
    np.testing.assert_allclose(metrics.iou_per_class(cm), [1 / 3, 3 / 4, 1 / 2])
    assert metrics.mean_iou(cm) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert metrics.pixel_accuracy(cm) == pytest.approx(5 / 7)
    precision, recall = metrics.precision_recall(cm)
    np.testing.assert_allclose(precision, [1 / 2, 3 / 4, 1.0])
    np.testing.assert_allclose(recall, [1 / 2, 1.0, 1 / 2])


@pytest.mark.parametrize("pred, target, message, error", [
    (np.zeros((2, 3), int), np.zeros((3, 2), int), r"same shape, got pred \(2, 3\) and target \(3, 2\)", ValueError),
    (np.zeros((2, 2), float), np.zeros((2, 2), int), "pred must hold integer class labels, got dtype float64", TypeError),
    (np.zeros((2, 2), int), np.full((2, 2), 3), r"target holds label 3, outside the valid range 0..2 or ignore_index=255",
     ValueError),
    (np.full((2, 2), -1), np.zeros((2, 2), int), r"pred holds label -1, outside the valid range 0..2", ValueError),
])
def test_bad_input_names_the_argument(pred, target, message, error):
    with pytest.raises(error, match=message):
        metrics.confusion_matrix(pred, target, 3, ignore_index=255)
