"""The torch DataLoader and the tf.data pipeline deliver the same batches in the same order."""

import numpy as np
import pytest

from segmentation_tf.data import make_loader as tf_loader
from segmentation_torch.data import make_loader as torch_loader
from segparity.data.dataset import ArrayDataset, batch_indices, epoch_order, synthetic_dataset
from segparity.data.preprocess import Augment
from segparity.data.samples import DatasetError


def _data(**kwargs):
    base = synthetic_dataset(11, (16, 16), num_classes=3, seed=5)
    return ArrayDataset(base.images, base.masks, base.keys, instances=base.instances, **kwargs)


def _batches(loader, channels_first):
    out = []
    for images, masks in loader:
        images, masks = np.asarray(images), np.asarray(masks)
        out.append((images.transpose(0, 2, 3, 1) if channels_first else images, masks))
    return out


@pytest.mark.parametrize("shuffle, drop_last", [(True, False), (False, False), (True, True)])
def test_torch_and_tf_batches_are_identical(shuffle, drop_last):
    data = _data(augment=Augment(hflip=True, vflip=True, rot90=True, crop=(12, 12)), mean=(0.5, 0.5, 0.5),
                 std=(0.2, 0.3, 0.4), seed=7)
    for epoch in (0, 3):
        torch_batches = _batches(torch_loader(data, 4, epoch, shuffle, drop_last), channels_first=True)
        tf_batches = _batches(tf_loader(data, 4, epoch, shuffle, drop_last), channels_first=False)
        expected = batch_indices(len(data), 4, epoch, data.seed, shuffle, drop_last)
        assert [len(b[1]) for b in torch_batches] == [len(b) for b in expected]
        assert len(tf_batches) == len(torch_batches) == (2 if drop_last else 3)
        for (ti, tm), (fi, fm), indices in zip(torch_batches, tf_batches, expected):
            assert ti.dtype == fi.dtype == np.float32 and tm.dtype == fm.dtype == np.int64
            assert ti.shape == (len(indices), 12, 12, 3)
            assert np.array_equal(ti, fi) and np.array_equal(tm, fm)
            reference = data.batch(indices, epoch)
            assert np.array_equal(ti, reference[0]) and np.array_equal(tm, reference[1])


def test_order_and_augmentation_change_with_epoch_but_not_with_repetition():
    data = _data(augment=Augment(hflip=True, rot90=True), seed=1)
    assert np.array_equal(epoch_order(11, 2, 1, True), epoch_order(11, 2, 1, True))
    assert not np.array_equal(epoch_order(11, 2, 1, True), epoch_order(11, 3, 1, True))
    assert sorted(epoch_order(11, 2, 1, True)) == list(range(11))
    seen = {tuple(data.item(0, epoch)[1].ravel()) for epoch in range(12)}
    assert len(seen) > 1  # flips and rotations really happen
    assert np.array_equal(data.item(4, 9)[0], data.item(4, 9)[0])


def test_without_augmentation_items_are_the_stored_arrays():
    data = _data()
    image, mask = data.item(3, 0)
    assert np.array_equal(image, data.images[3]) and np.array_equal(mask, data.masks[3])


def test_subset_keeps_keys_and_instances():
    data = _data()
    part = data.subset(["shape00004", "shape00001"])
    assert part.keys == ("shape00004", "shape00001")
    assert np.array_equal(part.images[0], data.images[4]) and np.array_equal(part.instances[1], data.instances[1])
    with pytest.raises(DatasetError, match="shape99999"):
        data.subset(["shape99999"])


def test_bad_batch_size_and_shapes_are_named():
    with pytest.raises(DatasetError, match="batch_size"):
        batch_indices(5, 0, 0, 0)
    with pytest.raises(DatasetError, match="masks"):
        ArrayDataset(np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4, 5), np.int64), ("a", "b"))


_MALLOPT_PROBE = """
import json, resource, numpy as np, torch
import segmentation_tf, tensorflow as tf
from segmentation_tf.data import make_loader
from segparity.data.dataset import synthetic_dataset

import segmentation_torch
torch.manual_seed(0)
model = segmentation_torch.build_model("unet", in_channels=3, num_classes=2, base_channels=8, depth=2)
x = torch.randn(4, 3, 64, 64)

def faults():  # fewest minor page faults of 5 training-mode forward and backward passes, in five tries
    counts = []
    for _ in range(5):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            model(x).square().mean().backward()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
    return min(counts)

faults()
before = faults()
for batch in make_loader(synthetic_dataset(8, (16, 16), num_classes=2, seed=0), 4):
    pass
ours = faults()
def generate():
    yield np.zeros(3, np.float32)
for item in tf.data.Dataset.from_generator(generate, output_signature=tf.TensorSpec((3,), tf.float32)):
    pass
print(json.dumps({"before": before, "ours": ours, "from_generator": faults()}))
"""


@pytest.mark.slow  # times both loaders: the suite's time budget (in .ci/run's slow step)
def test_pitfall_tf_from_generator_mallopt():
    """``tf.data.Dataset.from_generator`` fixes glibc's mmap threshold at 128 KiB for the whole process
    (TensorFlow's ``ApplyPython311MemoryPatch``): every torch tensor of 128 KiB or more is then a fresh
    mmap, page-faulted in each time, and torch trains ~30-50% slower after a Keras run in the same
    process. segparity's loader does not build that op. In a subprocess (the setting cannot be undone):
    the page faults of torch training passes stay as they were after our loader, and multiply after
    ``from_generator``."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _MALLOPT_PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    # measured here with the fewest of 5 tries (7 runs): ours 0.25-1.03x before; from_generator 4.3-9.6x ours. With the
    # fewest of 2 tries (as until 2026-12-06) from_generator came to 2.4x ours in one clean-clone CI run: too few
    # tries let the allocator's own warm-up decide
    assert counts["ours"] <= 1.5 * counts["before"] + 2000, counts  # the allocator behaves as before
    if counts["from_generator"] < 1.5 * counts["ours"]:
        pytest.skip(f"this TensorFlow's from_generator leaves the mmap threshold alone: {counts}")
    assert counts["from_generator"] >= 2.5 * counts["ours"], counts
