"""The whole loss catalogue: torch == numpy reference == Keras in value and gradient, for every loss in
every mode; properties (non-negative, minimal at the perfect prediction); edge cases (empty targets,
everything ignored, one class) finite and documented; independent cross-checks; bad input named."""

import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from segmentation_tf import losses as tf_losses
from segmentation_torch import losses as torch_losses
from segparity.reference import losses as reference
from segparity.reference import metrics
from segparity.comparison.tolerance import assert_close

IGNORE = 255
LOSSES = ("BinaryCrossEntropyLoss", "CrossEntropyLoss", "DiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss",
          "LovaszLoss", "CombinedLoss")


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1) if a.ndim == 4 else a


def run_torch(class_name: str, kwargs: dict, x: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss value and d loss / d input ``(N, C, H, W)``."""
    xt = torch.from_numpy(x).requires_grad_(True)
    loss = reference.build(torch_losses, class_name, kwargs)(xt, torch.from_numpy(target))
    loss.backward()
    return loss.item(), xt.grad.numpy()


def run_keras(class_name: str, kwargs: dict, x: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss value and d loss / d y_pred, returned as ``(N, C, H, W)``."""
    xk = tf.constant(_nhwc(x))
    with tf.GradientTape() as tape:
        tape.watch(xk)
        loss = reference.build(tf_losses, class_name, kwargs)(tf.constant(_nhwc(target)), xk)
    return float(loss), np.moveaxis(tape.gradient(loss, xk).numpy(), -1, 1)


def assert_three_way(class_name: str, kwargs: dict, x: np.ndarray, target: np.ndarray) -> float:
    expected = reference.reference(class_name, kwargs, x, target)
    value_t, grad_t = run_torch(class_name, kwargs, x, target)
    value_k, grad_k = run_keras(class_name, kwargs, x, target)
    assert np.isfinite([value_t, value_k]).all() and np.isfinite(grad_t).all() and np.isfinite(grad_k).all()
    assert_close(value_t, expected, quantity=f"torch {class_name} vs numpy")
    assert_close(value_k, expected, quantity=f"keras {class_name} vs numpy")
    scale = float(np.abs(grad_t).max()) or None
    assert_close(grad_k, grad_t, quantity=f"d {class_name} / d input", scale=scale)
    return expected


# --- problems ----------------------------------------------------------------------------------------

def make_target(rng, mode: str, shape: tuple, ignore: int | None, ignore_fraction: float, hard: bool) -> np.ndarray:
    """A target for ``mode`` matching input ``shape (N, C, H, W)``."""
    n, c, h, w = shape
    if mode == "multiclass":
        target = rng.integers(0, c, size=(n, h, w))
    else:
        target = (rng.random(shape) < 0.4).astype(np.float32)
        if not hard:
            target = np.where(rng.random(shape) < 0.3, rng.random(shape), target).astype(np.float32)
    if ignore is not None:
        target[rng.random(target.shape) < ignore_fraction] = ignore
    return target


def loss_options(draw, rng, class_name: str, mode: str, num_classes: int, ignore: int | None) -> dict:
    """Random constructor arguments of ``class_name`` (always with ``mode`` and ``ignore_index``)."""
    kw = dict(mode=mode, ignore_index=ignore)
    if class_name in ("BinaryCrossEntropyLoss", "CrossEntropyLoss"):
        kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.3]))
    if class_name == "CrossEntropyLoss" and draw(st.booleans()):
        count = num_classes if mode == "multiclass" else 2  # binary/multilabel: background, foreground
        kw["class_weights"] = [float(v) for v in rng.uniform(0.2, 3.0, size=count)]
    if class_name in ("DiceLoss", "JaccardLoss", "TverskyLoss"):
        kw["smooth"] = draw(st.sampled_from([0.0, 1.0]))
    if class_name == "TverskyLoss":
        kw.update(alpha=draw(st.sampled_from([0.3, 0.5, 0.7])), beta=draw(st.sampled_from([0.3, 0.5, 0.7])),
                  gamma=draw(st.sampled_from([0.75, 1.0, 4 / 3])))
    if class_name == "FocalLoss":
        kw.update(alpha=draw(st.sampled_from([None, 0.25])), gamma=draw(st.sampled_from([0.0, 0.5, 2.0])))
    return kw


def needs_labels(class_name: str, mode: str) -> bool:
    return class_name == "CrossEntropyLoss" or mode == "multiclass"


def lovasz_min_gap(x: np.ndarray, target: np.ndarray, mode: str, ignore: int | None) -> float:
    """Smallest gap between two sorted Lovász errors (float64): below float32 resolution the sort order,
    and with it the gradient, is not determined (docs/pitfalls.md, lovasz_sort_ties)."""
    t, valid = reference.targets_and_mask(target, mode, x.shape[1], ignore)
    if mode == "multiclass":
        p = reference.probabilities(x, mode, True)
        keep = valid[:, 0].astype(bool)
        groups = [np.abs(t[:, c][keep] - p[:, c][keep]) for c in range(x.shape[1])]
    else:
        keep = valid.astype(bool)
        groups = [1.0 - x[keep] * (2.0 * t[keep] - 1.0)]
    gaps = [np.diff(np.sort(g)).min() for g in groups if g.size > 1]
    return min(gaps, default=np.inf)


@st.composite
def problems(draw, class_name: str, hard: bool | None = None):
    """``(mode, kwargs, input (N, C, H, W) float32, target)``; ``hard``: 0/1 binary targets (default: drawn)."""
    mode = draw(st.sampled_from(reference.MODES))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    c = 1 if mode == "binary" else draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (rng.normal(size=(n, c, h, w)) * draw(st.sampled_from([0.3, 1.0, 4.0]))).astype(np.float32)
    ignore = draw(st.sampled_from([None, IGNORE]))
    if needs_labels(class_name, mode) or class_name == "LovaszLoss":
        hard = True
    hard = draw(st.booleans()) if hard is None else hard
    target = make_target(rng, mode, x.shape, ignore, draw(st.sampled_from([0.0, 0.2, 1.0])), hard)
    if needs_labels(class_name, mode):
        target = target.astype(np.int64)
    if class_name == "CombinedLoss":
        first = "CrossEntropyLoss" if mode == "multiclass" else "BinaryCrossEntropyLoss"
        parts = [(first, dict(mode=mode, ignore_index=ignore)), ("DiceLoss", dict(mode=mode, ignore_index=ignore))]
        kw = dict(losses=parts, weights=draw(st.sampled_from([None, [1.0, 0.5]])))
    else:
        kw = loss_options(draw, rng, class_name, mode, c, ignore)
    return mode, kw, x, target


@pytest.mark.parametrize("class_name", LOSSES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_torch_numpy_keras_agree(class_name, data):
    mode, kw, x, target = data.draw(problems(class_name))
    if class_name == "LovaszLoss":
        assume(lovasz_min_gap(x.astype(np.float64), target, mode, kw["ignore_index"]) > 1e-4)
    assert_three_way(class_name, kw, x, target)


@pytest.mark.parametrize("class_name", LOSSES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_losses_are_non_negative_and_zero_at_the_perfect_prediction(class_name, data):
    """Perfect prediction: probabilities equal to the 0/1 (one-hot) target, or margins of 3 for the
    Lovász hinge; no label smoothing (whose minimum is the smoothed target's entropy, not 0)."""
    mode, kw, x, target = data.draw(problems(class_name, hard=True))
    t, _ = reference.targets_and_mask(target, mode, x.shape[1], IGNORE)
    if class_name == "LovaszLoss" and mode != "multiclass":
        kw, perfect, other = kw, ((2.0 * t - 1.0) * 3.0).astype(np.float32), x
    else:
        kw = _probabilities_without_smoothing(class_name, kw)
        perfect, other = t.astype(np.float32), reference.probabilities(x, mode, True).astype(np.float32)
    best = reference.reference(class_name, kw, perfect, target)
    assert 0.0 <= best <= 1e-6  # the cross-entropies clip probabilities to [1e-7, 1 - 1e-7]
    assert reference.reference(class_name, kw, other, target) >= best
    assert_close(run_torch(class_name, kw, perfect, target)[0], best, quantity="torch at the perfect prediction")
    assert_close(run_keras(class_name, kw, perfect, target)[0], best, quantity="keras at the perfect prediction")


def _probabilities_without_smoothing(class_name: str, kwargs: dict) -> dict:
    """``kwargs`` with ``from_logits=False`` and no label smoothing (nested for CombinedLoss)."""
    if class_name == "CombinedLoss":
        return dict(kwargs, losses=[(n, _probabilities_without_smoothing(n, kw)) for n, kw in kwargs["losses"]])
    kwargs = dict(kwargs, from_logits=False)
    if "label_smoothing" in kwargs:
        kwargs["label_smoothing"] = 0.0
    return kwargs


# --- documented edge cases ---------------------------------------------------------------------------

def _catalogue(mode: str) -> list[tuple[str, dict]]:
    """One instance of every loss in ``mode`` (ignore_index 255)."""
    ce = "CrossEntropyLoss" if mode == "multiclass" else "BinaryCrossEntropyLoss"
    return [(name, dict(mode=mode, ignore_index=IGNORE)) for name in LOSSES[:-1]] + [
        ("CombinedLoss", dict(losses=[(ce, dict(mode=mode, ignore_index=IGNORE)),
                                      ("DiceLoss", dict(mode=mode, ignore_index=IGNORE))]))]


def _target_for(class_name: str, mode: str, target: np.ndarray) -> np.ndarray:
    return target.astype(np.int64) if needs_labels(class_name, mode) else target.astype(np.float32)


@pytest.mark.parametrize("mode", reference.MODES)
def test_everything_ignored_gives_zero_and_zero_gradient(mode):
    x = np.random.default_rng(1).normal(size=(2, 1 if mode == "binary" else 3, 3, 4)).astype(np.float32)
    target = np.full((2, 3, 4) if mode == "multiclass" else x.shape, IGNORE)
    for name, kw in _catalogue(mode):
        t = _target_for(name, mode, target)
        assert reference.reference(name, kw, x, t) == 0.0
        for value, grad in (run_torch(name, kw, x, t), run_keras(name, kw, x, t)):
            assert value == 0.0 and not grad.any(), name


def test_empty_binary_target_is_finite_and_documented():
    """No positive pixel: the overlap losses give 0 (a class without target pixels adds nothing, as in
    segmentation_models_pytorch), BCE and focal penalise every predicted positive, the Lovász hinge is
    its largest margin error."""
    x = np.random.default_rng(2).normal(size=(2, 1, 4, 4)).astype(np.float32)
    empty = np.zeros(x.shape, np.float32)
    values = {name: assert_three_way(name, kw, x, _target_for(name, "binary", empty))
              for name, kw in _catalogue("binary")}
    assert values["DiceLoss"] == values["JaccardLoss"] == values["TverskyLoss"] == 0.0
    assert values["BinaryCrossEntropyLoss"] > 0 and values["FocalLoss"] > 0
    assert values["LovaszLoss"] == pytest.approx(float(np.maximum(1.0 + x, 0).max()), rel=1e-6)


def test_single_class_batch_is_finite():
    """Every pixel of the batch has label 1 of 3: the absent classes count 0 in Dice/Jaccard/Tversky and
    are skipped by Lovász-softmax."""
    x = np.random.default_rng(3).normal(size=(2, 3, 4, 4)).astype(np.float32)
    labels = np.ones((2, 4, 4), np.int64)
    for name, kw in _catalogue("multiclass"):
        assert_three_way(name, kw, x, labels)
    inter, p_sum, t_sum = reference.overlap_sums(x, labels, "multiclass", True, None)
    assert reference.dice_loss(x, labels) == pytest.approx((1 - 2 * inter[1] / (p_sum[1] + t_sum[1])) / 3)


# --- independent cross-checks ------------------------------------------------------------------------

def test_cross_entropy_with_label_smoothing_equals_torch_functional():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 5, 3))
    labels[0, :2] = IGNORE
    weights = [0.5, 1.0, 2.0, 3.0]
    kw = dict(class_weights=weights, ignore_index=IGNORE, label_smoothing=0.2)
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(labels),
                                                 weight=torch.tensor(weights), ignore_index=IGNORE,
                                                 label_smoothing=0.2).item()
    assert_close(assert_three_way("CrossEntropyLoss", kw, x, labels), expected, quantity="CE vs F.cross_entropy")


def test_binary_cross_entropy_in_binary_mode_is_two_class_cross_entropy():
    """mode="binary": softmax over [0, x] is sigmoid(x), so CE on integer 0/1 labels equals BCE."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 1, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 2, size=(2, 4, 4))
    bce = assert_three_way("BinaryCrossEntropyLoss", dict(mode="binary"), x, labels.astype(np.float32))
    ce = assert_three_way("CrossEntropyLoss", dict(mode="binary"), x, labels)
    two_class = torch.cat([torch.zeros_like(torch.from_numpy(x)), torch.from_numpy(x)], dim=1)
    assert_close(ce, bce, quantity="CE(binary) vs BCE")
    assert_close(ce, torch.nn.functional.cross_entropy(two_class, torch.from_numpy(labels)).item(),
                  quantity="CE(binary) vs F.cross_entropy on [0, x]")


def test_focal_loss_matches_keras_focal_crossentropies():
    """Keras's own focal losses (no shared code): binary with class balancing, and categorical."""
    import keras

    rng = np.random.default_rng(6)
    xb = rng.normal(size=(2, 1, 5, 5)).astype(np.float32)
    tb = (rng.random(xb.shape) < 0.3).astype(np.float32)
    ours = assert_three_way("FocalLoss", dict(mode="binary", alpha=0.25, gamma=2.0), xb, tb)
    theirs = keras.losses.binary_focal_crossentropy(_nhwc(tb), _nhwc(xb), apply_class_balancing=True, alpha=0.25,
                                                    gamma=2.0, from_logits=True)
    assert_close(ours, float(np.mean(theirs)), quantity="binary focal vs Keras")
    x = rng.normal(size=(2, 3, 5, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 5, 5))
    ours = assert_three_way("FocalLoss", dict(alpha=0.25, gamma=2.0), x, labels)
    theirs = keras.losses.categorical_focal_crossentropy(np.eye(3, dtype=np.float32)[labels], _nhwc(x), alpha=0.25,
                                                         gamma=2.0, from_logits=True)
    assert_close(ours, float(np.mean(theirs)), quantity="categorical focal vs Keras", atol=1e-5)


def test_focal_loss_without_focusing_is_cross_entropy():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 4, 4))
    labels[1, 0] = IGNORE
    assert_close(assert_three_way("FocalLoss", dict(gamma=0.0, ignore_index=IGNORE), x, labels),
                  reference.cross_entropy(x, labels, ignore_index=IGNORE), quantity="focal gamma 0 vs CE")


def test_tversky_generalises_dice_and_jaccard():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 4, 4))
    assert_close(assert_three_way("TverskyLoss", dict(alpha=0.5, beta=0.5), x, labels),
                  reference.dice_loss(x, labels), quantity="Tversky(0.5, 0.5) vs Dice")
    assert_close(assert_three_way("TverskyLoss", dict(alpha=1.0, beta=1.0), x, labels),
                  reference.jaccard_loss(x, labels), quantity="Tversky(1, 1) vs Jaccard")


@given(st.integers(0, 2**32 - 1), st.integers(2, 5))
def test_lovasz_softmax_on_hard_predictions_is_one_minus_mean_iou(seed, num_classes):
    """The Lovász extension equals the Jaccard loss on 0/1 errors: with one-hot predictions, the loss is
    1 - IoU averaged over the classes in the target (IoU from ``segparity.reference.metrics``' confusion matrix)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=(2, 5, 5))
    predicted = rng.integers(0, num_classes, size=labels.shape)
    probs = np.moveaxis(np.eye(num_classes, dtype=np.float32)[predicted], -1, 1)
    iou = metrics.iou_per_class(metrics.confusion_matrix(predicted, labels, num_classes))
    present = np.isin(np.arange(num_classes), labels)
    expected = float(np.mean(1.0 - np.nan_to_num(iou[present])))
    kw = dict(from_logits=False)
    assert reference.lovasz_loss(probs, labels, **kw) == pytest.approx(expected, abs=1e-12)
    assert_close(run_torch("LovaszLoss", kw, probs, labels)[0], expected, quantity="torch Lovász vs 1 - IoU")
    assert_close(run_keras("LovaszLoss", kw, probs, labels)[0], expected, quantity="keras Lovász vs 1 - IoU")


# --- Keras integration -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kw", _catalogue("multiclass"), ids=[n for n, _ in _catalogue("multiclass")])
def test_keras_losses_compile_fit_and_rebuild_from_config(name, kw):
    import keras

    loss = reference.build(tf_losses, name, kw)
    clone = type(loss).from_config(loss.get_config())
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 4, 4))
    assert float(clone(labels, _nhwc(x))) == float(loss(labels, _nhwc(x)))
    graph = tf.function(lambda y, p: loss(y, p), input_signature=[tf.TensorSpec((None, None, None), tf.int64),
                                                                  tf.TensorSpec((None, None, None, 3), tf.float32)])
    assert_close(float(graph(labels, _nhwc(x))), float(loss(labels, _nhwc(x))), quantity="tf.function vs eager")
    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    history = model.fit(rng.random((4, 4, 4, 2), dtype=np.float32), rng.integers(0, 3, size=(4, 4, 4)),
                        batch_size=2, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


# --- bad input ---------------------------------------------------------------------------------------

def _both_raise(name: str, kw: dict, x: np.ndarray, target: np.ndarray) -> list[str]:
    messages = []
    for call in (lambda: reference.build(torch_losses, name, kw)(torch.from_numpy(x), torch.from_numpy(target)),
                 lambda: reference.build(tf_losses, name, kw)(_nhwc(target), _nhwc(x))):
        with pytest.raises((ValueError, TypeError)) as exc:
            call()
        messages.append(str(exc.value))
    return messages


@pytest.mark.parametrize("name", LOSSES[:-1])
def test_bad_input_is_named(name):
    x3 = np.zeros((1, 3, 2, 2), np.float32)
    x1 = np.zeros((1, 1, 2, 2), np.float32)
    labels = np.array([[[0, 1], [2, 0]]])
    for message in _both_raise(name, dict(mode="multiclass"), x3, np.zeros((1, 2, 3), np.int64)):
        assert "expected (1, 2, 2), got (1, 2, 3)" in message
    for message in _both_raise(name, dict(mode="multiclass", ignore_index=IGNORE), x3, labels + 1):
        assert "holds label 3, outside the valid range 0..2 or ignore_index=255" in message
    for message in _both_raise(name, dict(mode="multiclass"), x3, labels.astype(np.float32)):
        assert "must hold integer class labels, got dtype float32" in message
    nan = x3.copy()
    nan[0, 2, 1, 1] = np.nan
    for message in _both_raise(name, dict(mode="multiclass"), nan, labels):
        assert "contains NaN or infinity" in message
    for message in _both_raise(name, dict(mode="binary"), x3, np.zeros(x3.shape, np.int64)):
        assert "mode='binary' needs one channel" in message and "got 3" in message
    binary_target = np.array([[[[0, 2], [1, 0]]]], np.int64 if name == "CrossEntropyLoss" else np.float32)
    for message in _both_raise(name, dict(mode="binary"), x1, binary_target):
        assert "holds 2" in message or "holds label 2" in message
    if name != "LovaszLoss":  # the hinge takes logits only (checked at construction)
        for message in _both_raise(name, dict(mode="multiclass", from_logits=False), x3 + 1.5, labels):
            assert "holds 1.5, not a probability in [0, 1]; pass from_logits=True" in message


def test_bad_arguments_are_named():
    for module in (torch_losses, tf_losses):
        with pytest.raises(ValueError, match="DiceLoss: mode must be one of 'binary', 'multilabel', 'multiclass'"):
            module.DiceLoss(mode="softmax")
        with pytest.raises(ValueError, match=r"FocalLoss: alpha must lie in \[0, 1\], got 1.5"):
            module.FocalLoss(alpha=1.5)
        with pytest.raises(ValueError, match="from_logits must be True"):
            module.LovaszLoss(mode="binary", from_logits=False)
        with pytest.raises(ValueError, match="CombinedLoss: 1 weights for 2 losses"):
            module.CombinedLoss([module.DiceLoss(), module.JaccardLoss()], weights=[1.0])
    nan_target = np.zeros((1, 1, 2, 2), np.float32)
    nan_target[0, 0, 1, 1] = np.nan
    for message in _both_raise("DiceLoss", dict(mode="binary"), np.zeros((1, 1, 2, 2), np.float32), nan_target):
        assert message.split()[0] in ("target", "y_true") and "contains NaN or infinity" in message
    soft = np.full((1, 1, 2, 2), 0.5, np.float32)
    for message in _both_raise("LovaszLoss", dict(mode="binary"), np.zeros((1, 1, 2, 2), np.float32), soft):
        assert "holds 0.5, but binary and multilabel targets must be 0 or 1" in message
    for message in _both_raise("CrossEntropyLoss", dict(class_weights=[1.0, 2.0]), np.zeros((1, 3, 2, 2), np.float32),
                               np.zeros((1, 2, 2), np.int64)):
        assert "class_weights has 2 entries but multiclass mode has 3 classes" in message


# --- pitfalls ----------------------------------------------------------------------------------------

def test_pitfall_lovasz_sort_ties():
    """Lovász-softmax's gradient depends on the order of the sorted errors ``|onehot - p|``. torch's and
    TensorFlow's softmax differ in the last bit on most entries, so two errors closer than that swap
    places in one framework: the values agree, the gradients of the swapped pixels do not (naive: each
    framework its own softmax). Given the same float32 probabilities the sort, and every gradient,
    agree exactly (fixed; what ``segparity report`` does, ``segparity.reference.losses.report_catalogue``)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 3, size=(8, 32, 32))
    value_t, grad_t = run_torch("LovaszLoss", {}, x, labels)
    value_k, grad_k = run_keras("LovaszLoss", {}, x, labels)
    assert_close(value_k, value_t, quantity="Lovász value, own softmax")
    scale = float(np.abs(grad_t).max())
    moved = np.argwhere(np.abs(grad_k - grad_t) > 1e-5 * scale)
    assert len(moved) > 0, "naive: the gradients differ"
    # every pixel whose gradient moved has, in some class, an error within 1e-6 of another pixel's
    p = torch.softmax(torch.from_numpy(x), dim=1).numpy().astype(np.float64)
    errors = np.abs(np.moveaxis(np.eye(3)[labels], -1, 1) - p)
    for n, _, h, w in moved:
        gaps = np.abs(errors[:, :, :, :] - errors[n, :, h, w][None, :, None, None])
        gaps[n, :, h, w] = np.inf
        assert gaps.min(axis=(0, 2, 3)).min() < 1e-6, "a moved gradient without a near tie"
    probs = p.astype(np.float32)
    kw = dict(from_logits=False)
    value_t, grad_t = run_torch("LovaszLoss", kw, probs, labels)
    value_k, grad_k = run_keras("LovaszLoss", kw, probs, labels)
    assert_close(value_k, value_t, quantity="Lovász value, same probabilities")
    assert_close(grad_k, grad_t, quantity="Lovász gradient, same probabilities", scale=float(np.abs(grad_t).max()))


def test_pitfall_pow_gradient_at_zero():
    """``x ** 0`` at ``x = 0``: torch's gradient is 0, TensorFlow's is NaN (0 * 0 ** -1), and for
    ``0 < gamma < 1`` both are infinite. A focal loss with gamma 0 (or a focal Tversky loss with gamma
    below 1) at a confident, correct pixel hits exactly that (naive); the losses raise to gamma through
    ``_power``, whose gradient at 0 is 0 (fixed)."""
    zero = tf.Variable([0.0])
    with tf.GradientTape() as tape:
        naive = tf.reduce_sum(zero ** 0.0)
    assert np.isnan(tape.gradient(naive, zero).numpy()).all()
    x_t = torch.zeros(1, requires_grad=True)
    (x_t ** 0.0).sum().backward()
    assert x_t.grad.item() == 0.0
    x = np.array([[[[30.0]], [[-30.0]]]], np.float32)  # softmax probability of class 0 rounds to exactly 1
    labels = np.zeros((1, 1, 1), np.int64)
    for gamma in (0.0, 0.5):
        for class_name, kw in (("FocalLoss", dict(gamma=gamma)), ("TverskyLoss", dict(gamma=gamma))):
            assert_three_way(class_name, kw, x, labels)


def test_the_report_evaluates_every_loss_class():
    """``segparity report``: BCE and CE run through the network (``segparity.comparison.trace.network_losses``), the
    rest on its logits (``segparity.reference.losses.report_catalogue``); together they cover every loss class, in
    binary mode (one-logit networks) and multiclass mode."""
    import inspect

    from segparity.comparison.trace import TraceSettings, network_losses

    def classes(entries):
        out = set()
        for class_name, kwargs in entries:
            out.add(class_name)
            out |= classes(kwargs.get("losses", []))
        return out

    public = {name for name, obj in vars(torch_losses).items()
              if inspect.isclass(obj) and obj.__module__ == torch_losses.__name__ and not name.startswith("_")}
    for num_classes in (1, 3):
        used = classes(network_losses(num_classes, TraceSettings()).values())
        used |= classes(reference.report_catalogue(num_classes, IGNORE).values())
        assert used == public == set(LOSSES)
