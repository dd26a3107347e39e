"""Instance and panoptic metrics of ``shared/reference/metrics.py``: hand-computed cases (a perfect match, a split,
a merge, a miss, a false positive, void and stuff), properties (a map against itself, relabelled
instance ids), and bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skimage.segmentation import relabel_sequential

from segparity.reference.metrics import instance_scores, panoptic_quality, symmetric_best_dice

THING, STUFF, VOID = 1, 2, 9


def _panoptic(classes, ids) -> np.ndarray:
    """One image ``(1, H, W, 2)`` from class and instance maps."""
    return np.stack([np.asarray(classes), np.asarray(ids)], axis=-1)[None].astype(np.int32)


def _strip(width_10s: list[int], height=10) -> np.ndarray:
    """Instance map ``(height, sum)``: vertical bands of the given widths, ids 1, 2, ..."""
    return np.concatenate([np.full((height, w), k + 1) for k, w in enumerate(width_10s)], axis=1)


def test_a_perfect_match_scores_one():
    ids = _strip([4, 6])
    image = _panoptic(np.full(ids.shape, THING), ids)
    result = panoptic_quality(image, image, things=[THING], stuffs=[STUFF])
    assert result["pq"] == result["sq"] == result["rq"] == 1.0 and result["per_class"][THING]["tp"] == 2
    assert symmetric_best_dice(ids, ids) == 1.0
    assert instance_scores(ids, ids) == {"tp": 2, "fp": 0, "fn": 2 - 2, "precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_a_split_instance_is_one_match_and_one_false_positive():
    # target: one instance of 10 columns; prediction: 6 + 4 columns -> IoU 0.6 (match) and 0.4 (FP)
    target, pred = _strip([10]), _strip([6, 4])
    result = panoptic_quality(_panoptic(np.ones_like(pred), pred), _panoptic(np.ones_like(target), target),
                              things=[THING], stuffs=[])
    assert result["per_class"][THING] == pytest.approx({"pq": 0.6 * (1 / 1.5), "sq": 0.6, "rq": 1 / 1.5,
                                                        "tp": 1, "fp": 1, "fn": 0})
    # SBD: pred's best Dice 0.75 (6 of 10) and 4/7 -> mean 0.661; target's best 0.75 -> min 0.661
    assert symmetric_best_dice(pred, target) == pytest.approx((2 * 6 / 16 + 2 * 4 / 14) / 2)
    assert instance_scores(pred, target)["precision"] == 0.5


def test_a_merge_is_one_match_and_one_miss():
    # target: 7 + 3 columns; prediction: one instance over all 10 -> IoU 0.7 with the first, 0.3 with the second
    target, pred = _strip([7, 3]), _strip([10])
    result = panoptic_quality(_panoptic(np.ones_like(pred), pred), _panoptic(np.ones_like(target), target),
                              things=[THING], stuffs=[])
    assert result["per_class"][THING] == pytest.approx({"pq": 0.7 / 1.5, "sq": 0.7, "rq": 1 / 1.5,
                                                        "tp": 1, "fp": 0, "fn": 1})
    assert instance_scores(pred, target) == pytest.approx({"tp": 1, "fp": 0, "fn": 1, "precision": 1.0,
                                                           "recall": 0.5, "f1": 2 / 3})


def test_an_even_split_matches_nothing():
    target, pred = _strip([10]), _strip([5, 5])  # IoU exactly 0.5 is not a match (> 0.5 is)
    result = panoptic_quality(_panoptic(np.ones_like(pred), pred), _panoptic(np.ones_like(target), target),
                              things=[THING], stuffs=[])
    assert result["per_class"][THING] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 2, "fn": 1}


def test_a_missed_instance_and_a_false_positive():
    target = np.zeros((10, 40), int)
    target[:, :5], target[:, 10:13] = 1, 2
    pred = np.zeros((10, 40), int)
    pred[:, :5], pred[:, 37:] = 1, 2  # finds instance 1 exactly, misses 2, invents one elsewhere
    classes_t, classes_p = np.where(target > 0, THING, STUFF), np.where(pred > 0, THING, STUFF)
    result = panoptic_quality(_panoptic(classes_p, pred), _panoptic(classes_t, target), things=[THING], stuffs=[STUFF])
    assert result["per_class"][THING] == pytest.approx({"pq": 1 / 2, "sq": 1.0, "rq": 1 / 2, "tp": 1, "fp": 1, "fn": 1})
    # stuff (the rest): 320 px in each, 290 in common -> IoU 290 / 350, a match
    assert result["per_class"][STUFF]["sq"] == pytest.approx(290 / 350) and result["per_class"][STUFF]["tp"] == 1
    assert result["pq"] == pytest.approx((0.5 + 290 / 350) / 2) and result["things"]["pq"] == pytest.approx(0.5)
    assert instance_scores(pred, target) == pytest.approx({"tp": 1, "fp": 1, "fn": 1, "precision": 0.5,
                                                           "recall": 0.5, "f1": 0.5})


def test_stuff_ignores_instance_ids_and_void_is_left_out():
    classes = np.full((4, 10), STUFF)
    classes[:, 8:] = VOID  # 8 void pixels in the target
    target_ids = np.zeros((4, 10), int)
    target_ids[:, 5:] = 7  # instance ids of a stuff class do not split it
    pred_classes = np.full((4, 10), STUFF)  # predicts stuff on the void pixels too: not counted against it
    result = panoptic_quality(_panoptic(pred_classes, np.zeros((4, 10), int)), _panoptic(classes, target_ids),
                              things=[THING], stuffs=[STUFF])
    assert result["per_class"] == {STUFF: {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0}}
    # a predicted thing lying mostly on target void (8 of its 12 pixels) is neither a match nor a false positive
    pred_classes = np.full((4, 10), STUFF)
    pred_classes[:, 7:] = THING
    result = panoptic_quality(_panoptic(pred_classes, np.where(pred_classes == THING, 3, 0)),
                              _panoptic(classes, np.zeros((4, 10), int)), things=[THING], stuffs=[STUFF])
    assert result["per_class"] == {STUFF: {"pq": 28 / 32, "sq": 28 / 32, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0}}
    only_void = _panoptic(np.full((4, 10), VOID), np.zeros((4, 10), int))
    result = panoptic_quality(only_void, only_void, things=[THING], stuffs=[STUFF])
    assert result["per_class"] == {} and np.isnan(result["pq"]) and result["n"] == 0


def test_empty_images_are_defined():
    empty = np.zeros((2, 4, 4), int)
    assert symmetric_best_dice(empty, empty) == 1.0
    assert instance_scores(empty, empty) == {"tp": 0, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    one = empty.copy()
    one[0, :2, :2] = 1
    assert symmetric_best_dice(one, empty) == 0.5  # image 0: one side empty -> 0; image 1: both empty -> 1
    assert instance_scores(empty, one)["recall"] == 0.0 and instance_scores(one, empty)["precision"] == 0.0


def test_bad_input_is_named():
    image = _panoptic(np.ones((4, 4), int), np.ones((4, 4), int))
    with pytest.raises(ValueError, match=r"same shape, got pred \(1, 4, 4, 2\) and target \(1, 4, 5, 2\)"):
        panoptic_quality(image, np.concatenate([image, image[:, :, :1]], axis=2), things=[1], stuffs=[])
    with pytest.raises(ValueError, match=r"must have shape \(N, H, W, 2\), got \(4, 4, 2\)"):
        panoptic_quality(image[0], image[0], things=[1], stuffs=[])
    with pytest.raises(TypeError, match="target must be an integer label map, got dtype float32"):
        panoptic_quality(image, image.astype(np.float32), things=[1], stuffs=[])
    with pytest.raises(ValueError, match=r"both a thing and stuff: \[1\]"):
        panoptic_quality(image, image, things=[1], stuffs=[1])
    with pytest.raises(ValueError, match="non-negative"):
        panoptic_quality(image, -image, things=[1], stuffs=[])
    with pytest.raises(ValueError, match=r"\(H, W\) or \(N, H, W\)"):
        symmetric_best_dice(np.zeros(4, int), np.zeros(4, int))


@st.composite
def _panoptic_maps(draw):
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(2, 8)), draw(st.integers(2, 8))
    classes = draw(st.lists(st.sampled_from([0, THING, STUFF, VOID]), min_size=n * h * w, max_size=n * h * w))
    ids = draw(st.lists(st.integers(0, 3), min_size=n * h * w, max_size=n * h * w))
    return np.stack([np.reshape(classes, (n, h, w)), np.reshape(ids, (n, h, w))], axis=-1).astype(np.int64)


@given(_panoptic_maps())
def test_a_map_against_itself_is_perfect(image):
    result = panoptic_quality(image, image, things=[0, THING], stuffs=[STUFF])
    if result["n"]:
        assert result["pq"] == result["sq"] == result["rq"] == 1.0
        assert all(c["fp"] == c["fn"] == 0 for c in result["per_class"].values())
    else:  # only void pixels: nothing to score
        assert np.isnan(result["pq"])


@given(_panoptic_maps(), _panoptic_maps(), st.randoms(use_true_random=False))
def test_scores_do_not_depend_on_instance_numbering(pred, target, random):
    if pred.shape != target.shape:
        target = np.resize(target, pred.shape)
    relabelled = pred.copy()
    for n in range(pred.shape[0]):  # a different id per (class, id) pair, in a random order
        pairs = np.unique(pred[n].reshape(-1, 2), axis=0)
        new_ids = random.sample(range(10, 10 + 4 * len(pairs)), len(pairs))
        for (c, i), new in zip(pairs, new_ids):
            relabelled[n][(pred[n, ..., 0] == c) & (pred[n, ..., 1] == i), 1] = new
    kwargs = dict(things=[0, THING], stuffs=[STUFF])
    a, b = panoptic_quality(pred, target, **kwargs), panoptic_quality(relabelled, target, **kwargs)
    assert a["per_class"] == b["per_class"]
    instances = pred[..., 1] * 4 + pred[..., 0]  # an instance map from the same pixels
    shuffled = relabel_sequential(instances)[0]  # scikit-image renumbers them 1..k in another order
    assert symmetric_best_dice(instances, target[..., 1]) == pytest.approx(symmetric_best_dice(shuffled, target[..., 1]))
    assert instance_scores(instances, target[..., 1]) == instance_scores(shuffled, target[..., 1])
