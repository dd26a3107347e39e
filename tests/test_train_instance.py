"""``segparity train --task instance|panoptic``: a two-headed network trained on the synthetic instance
data in both frameworks, scored with PQ on the validation set, pictures written next to the semantic one.

These runs are tiny (a few seconds); the README's figure (PQ >= 0.6 in both frameworks) is a full run.
"""

import contextlib
import io
import json

import numpy as np
import pytest

from segmentation_tf.data import make_loader as tf_loader
from segmentation_torch.data import make_loader as torch_loader
from segparity import cli
from segparity.data.dataset import synthetic_dataset
from segparity.data.preprocess import Augment
from segparity.training.runs import read_metrics
from segparity.training.config import COLUMNS, make_config

TINY = ["--arch", "unet", "--model-option", "base_channels=4", "--model-option", "depth=2", "--image-size", "32",
        "--synthetic-samples", "24", "--batch-size", "8", "--epochs", "2", "--embedding-dim", "3", "--quiet"]


def _train(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(["train", *args])
    return status, out.getvalue(), err.getvalue()


# the Keras run is slow (the suite's time budget; in .ci/run's slow step)
@pytest.mark.parametrize("framework, task", [("torch", "instance"), pytest.param("tf", "panoptic", marks=pytest.mark.slow)])
def test_train_task_writes_scores_and_pictures(tmp_path, framework, task):
    classes = "3" if task == "instance" else "4"
    status, out, err = _train(["--framework", framework, "--task", task, "--synthetic-classes", classes,
                               "--out", str(tmp_path), *TINY])
    assert status == 0, err
    rows = read_metrics(tmp_path / "metrics.csv")
    assert len(rows) == 2 and all(np.isfinite(rows[-1][c]) for c in COLUMNS)
    scores = json.loads((tmp_path / "panoptic.json").read_text())
    things, stuffs = ([1, 2], [0]) if task == "instance" else ([1, 2], [0, 3])
    assert scores["things"] == things and scores["stuffs"] == stuffs and scores["images"] == 2
    for name in ("embedding", "semantic_only"):
        assert {"pq", "sq", "rq", "things", "stuff", "per_class", "instance_f1", "sbd"} <= set(scores[name])
    assert f"{task}, embedding on 2 validation images: PQ " in out and f"{task}, semantic only on" in out
    for picture in ("predictions.png", "instances.png", "panoptic.png"):
        assert (tmp_path / picture).stat().st_size > 1000
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["task"] == task and stored["embedding_dim"] == 3


def test_instance_batches_are_identical_in_both_frameworks():
    data = synthetic_dataset(6, (32, 32), num_classes=3, seed=2, task="instance")
    data = type(data)(data.images, data.masks, data.keys, augment=Augment(hflip=True, rot90=True), seed=4,
                      instances=data.instances)
    torch_batches = list(torch_loader(data, 4, epoch=1, instances=True))
    tf_batches = list(tf_loader(data, 4, epoch=1, instances=True))
    assert len(torch_batches) == len(tf_batches) == 2
    for (ti, (tm, tn)), (fi, (fm, fn)) in zip(torch_batches, tf_batches):
        assert np.array_equal(ti.numpy().transpose(0, 2, 3, 1), fi.numpy())
        assert np.array_equal(tm.numpy(), fm.numpy()) and np.array_equal(tn.numpy(), fn.numpy())
        assert tn.dtype == tm.dtype and ((tn.numpy() > 0) == (tm.numpy() > 0)).all()  # flipped together
    image, mask = data.item(3, 1)
    same_image, same_mask, _ = data.instance_item(3, 1)
    assert np.array_equal(image, same_image) and np.array_equal(mask, same_mask)


@pytest.mark.parametrize("given, message", [
    (dict(task="instance", data="ph2:/nowhere"), "task 'instance' needs instance masks: only --data synthetic"),
    (dict(task="panoptic", synthetic_classes=2), "panoptic task needs at least 3 classes"),
    (dict(task="instance", model_options={"embedding_dim": 4}), "give the embedding size as embedding_dim"),
    (dict(task="instance", embedding_dim=0), "embedding_dim must be a positive integer"),
    (dict(task="detection"), "task must be one of"),
])
def test_bad_task_settings_are_named(given, message):
    with pytest.raises(ValueError, match=message):
        make_config("torch", "unet", **given)


def test_bad_task_on_the_command_line_is_one_line(tmp_path):
    status, _, err = _train(["--framework", "torch", "--task", "panoptic", "--synthetic-classes", "2",
                             "--out", str(tmp_path), *TINY])
    assert status == 2 and "segparity train: error: the panoptic task needs at least 3 classes" in err
    assert not (tmp_path / "config.json").exists()
