"""Streaming metrics in both frameworks equal the numpy reference exactly, batch after batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import segmentation_tf as ktf
from segmentation_tf import metrics as keras_metrics
from segmentation_torch import metrics as torch_metrics
from segparity.reference import metrics

IGNORE = 255
SCORES = {"MeanIoU": metrics.mean_iou, "MeanDice": metrics.mean_dice, "PixelAccuracy": metrics.pixel_accuracy}


@st.composite
def batches(draw):
    c = draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    count = draw(st.integers(1, 3))
    # normal floats only: TensorFlow flushes subnormals to zero (pitfall subnormals_are_zero_in_tensorflow)
    values = st.floats(-3, 3, width=32, allow_subnormal=False)
    logits = [draw(arrays(np.float32, (shape[0], c) + shape[1:], elements=values)) for _ in range(count)]
    targets = [draw(arrays(np.int64, shape, elements=st.one_of(st.integers(0, max(c, 2) - 1), st.just(IGNORE))))
               for _ in range(count)]
    return logits, targets, max(c, 2)  # one channel: binary, labels 0/1


def _reference_labels(logits):
    return (logits[:, 0] > 0).astype(np.int64) if logits.shape[1] == 1 else logits.argmax(axis=1)


@settings(max_examples=25, deadline=None)
@given(batches())
def test_torch_keras_and_numpy_confusion_matrices_are_equal(data):
    logits, targets, c = data
    t_cm, k_cm = torch_metrics.ConfusionMatrix(c, ignore_index=IGNORE), keras_metrics.ConfusionMatrix(c, ignore_index=IGNORE)
    scores = {name: (getattr(torch_metrics, name)(c, ignore_index=IGNORE), getattr(keras_metrics, name)(c, ignore_index=IGNORE))
              for name in SCORES}
    reference = np.zeros((c, c), np.int64)
    for x, y in zip(logits, targets):
        reference += metrics.confusion_matrix(_reference_labels(x), y, c, ignore_index=IGNORE)
        for metric in [t_cm] + [t for t, _ in scores.values()]:
            metric.update(torch.from_numpy(x), torch.from_numpy(y))
        for metric in [k_cm] + [k for _, k in scores.values()]:
            metric.update_state(y, np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(t_cm.compute(), reference)
    np.testing.assert_array_equal(np.asarray(k_cm.result()), reference)
    for name, (t_metric, k_metric) in scores.items():
        expected = SCORES[name](reference)
        for value in (t_metric.compute(), float(k_metric.result())):
            assert value == expected or (np.isnan(value) and np.isnan(expected)), name
    t_cm.reset()
    k_cm.reset_state()
    assert not t_cm.compute().any() and not np.asarray(k_cm.result()).any()


def test_integer_predictions_are_used_as_labels():
    pred = np.array([[[0, 1], [2, 2]]])
    target = np.array([[[0, 1], [1, 255]]])
    t, k = torch_metrics.ConfusionMatrix(3, 255), keras_metrics.ConfusionMatrix(3, 255)
    t.update(torch.from_numpy(pred), torch.from_numpy(target))
    k.update_state(target, pred)
    expected = metrics.confusion_matrix(pred, target, 3, ignore_index=255)
    np.testing.assert_array_equal(t.compute(), expected)
    np.testing.assert_array_equal(np.asarray(k.result()), expected)


def test_labels_out_of_range_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match=r"target holds label 3, outside the valid range 0..2 or ignore_index=255"):
        torch_metrics.ConfusionMatrix(3, 255).update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match=r"y_true holds label 3, outside the valid range 0..2 or ignore_index=255"):
        keras_metrics.ConfusionMatrix(3, 255).update_state(np.full((1, 2, 2), 3), np.zeros((1, 2, 2), np.int64))
    with pytest.raises(ValueError, match=r"y_pred holds label 5, outside the valid range 0..2"):
        keras_metrics.ConfusionMatrix(3).update_state(np.zeros((1, 2, 2)), np.full((1, 2, 2), 5))
    with pytest.raises(TypeError, match="target must hold integer class labels"):
        torch_metrics.ConfusionMatrix(3).update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2))
    for metric in (torch_metrics.ConfusionMatrix, keras_metrics.ConfusionMatrix):
        with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
            metric(0)


def test_nan_logits_are_refused_with_the_argument_named():
    logits = np.zeros((1, 3, 2, 2), np.float32)
    logits[0, 1, 1, 0] = np.nan
    labels = np.zeros((1, 2, 2), np.int64)
    with pytest.raises(ValueError, match="preds contains NaN or infinity"):
        torch_metrics.MeanIoU(3).update(torch.from_numpy(logits), torch.from_numpy(labels))
    with pytest.raises(ValueError, match="y_pred contains NaN or infinity"):
        keras_metrics.MeanIoU(3).update_state(labels, np.moveaxis(logits, 1, -1))
    metric = keras_metrics.PixelAccuracy(3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_pred contains NaN or infinity"):
        tf.function(lambda y, p: metric.update_state(y, p))(labels, np.moveaxis(logits, 1, -1))


def test_graph_mode_check_names_the_argument():
    """Inside a traced graph (as in fit) the values are unknown while tracing: TensorFlow's assert names
    the argument and the allowed range."""
    metric = keras_metrics.ConfusionMatrix(3, 255)
    update = tf.function(lambda y, p: metric.update_state(y, p))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"y_true holds a label outside 0..2 or ignore_index=255"):
        update(tf.fill((1, 2, 2), tf.constant(3, tf.int64)), tf.zeros((1, 2, 2), tf.int64))


def test_keras_scores_work_in_compile_and_fit():
    model = ktf.build_model("unet", in_channels=3, num_classes=2, base_channels=4, depth=2)
    from segmentation_tf.losses import CrossEntropyLoss

    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=CrossEntropyLoss(ignore_index=IGNORE),
                  metrics=[getattr(keras_metrics, name)(2, ignore_index=IGNORE) for name in SCORES])
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    y = (x[..., 0] > 0.5).astype("int32")
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    for key in ("mean_iou", "mean_dice", "pixel_accuracy"):
        assert 0.0 <= history.history[key][0] <= 1.0


def test_pitfall_keras_argmax_signed_zero():
    """Found by the property test above: ``keras.ops.argmax`` ranks -0.0 below 0.0, so logits
    [-0.0, 0.0] give class 1, where torch, numpy and ``tf.argmax`` see a tie and give the first class.
    The Keras metrics use ``tf.argmax``."""
    logits = np.array([[[[-0.0, 0.0]]]], np.float32)  # (N, H, W, C)
    assert int(np.asarray(keras.ops.argmax(logits, axis=-1)).item()) == 1
    assert int(torch.argmax(torch.from_numpy(np.moveaxis(logits, -1, 1)), dim=1).item()) == 0
    assert int(np.asarray(keras_metrics.predicted_labels(logits)).item()) == 0


def test_one_channel_threshold_labels_above_it_in_both_frameworks():
    """``threshold=0.5`` labels a probability map (a network ending in a sigmoid) as the numpy reference does on
    ``p > 0.5``; the default 0 would call every probability foreground. Values are built away from 0.5 and 0."""
    rng = np.random.default_rng(3)
    probabilities = rng.choice(np.array([0.1, 0.3, 0.7, 0.9], np.float32), size=(2, 1, 5, 6))
    target = rng.integers(0, 2, size=(2, 5, 6))
    expected = metrics.mean_iou(metrics.confusion_matrix((probabilities[:, 0] > 0.5).astype(np.int64), target, 2))
    everything = metrics.mean_iou(metrics.confusion_matrix(np.ones_like(target), target, 2))
    assert expected != everything
    ours = torch_metrics.MeanIoU(2, threshold=0.5)
    ours.update(torch.from_numpy(probabilities), torch.from_numpy(target))
    theirs = keras_metrics.MeanIoU(2, threshold=0.5)
    theirs.update_state(target, np.moveaxis(probabilities, 1, -1))
    assert ours.compute() == expected and float(theirs.result()) == expected
    default = torch_metrics.MeanIoU(2)
    default.update(torch.from_numpy(probabilities), torch.from_numpy(target))
    assert default.compute() == everything
    assert keras_metrics.MeanIoU.from_config(theirs.get_config()).threshold == 0.5
