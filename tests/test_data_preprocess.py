"""The one preprocessing path: resizing (scikit-image), normalisation and seeded augmentation."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segparity.data.preprocess import Augment, normalize, resize_image, resize_mask, sample_rng
from segparity.data.samples import DatasetError


def test_resize_keeps_labels_and_range():
    rng = np.random.default_rng(0)
    image = rng.random((30, 40, 3), dtype=np.float32)
    mask = np.zeros((30, 40), np.uint8)
    mask[5:20, 10:30] = 1
    small_image, small_mask = resize_image(image, (15, 20)), resize_mask(mask, (15, 20))
    assert small_image.shape == (15, 20, 3) and small_image.dtype == np.float32
    assert 0.0 <= small_image.min() and small_image.max() <= 1.0
    assert small_mask.dtype == np.uint8 and set(np.unique(small_mask)) == {0, 1}
    assert small_mask.sum() == pytest.approx(mask.sum() / 4, rel=0.1)


def test_normalize_per_channel_and_bad_std():
    image = np.ones((2, 2, 3), np.float32)
    out = normalize(image, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert out[0, 0].tolist() == [2.0, 1.0, 0.5]
    assert normalize(image, None, None) is image
    with pytest.raises(DatasetError, match="std must be positive"):
        normalize(image, None, (1.0, 0.0, 1.0))


@given(st.integers(0, 2**32 - 1), st.integers(0, 50), st.integers(0, 1000))
def test_augmentation_is_a_function_of_seed_epoch_and_index(seed, epoch, index):
    rng = np.random.default_rng(seed)
    image = rng.random((8, 8, 3), dtype=np.float32)
    mask = rng.integers(0, 2, (8, 8)).astype(np.uint8)
    augment = Augment(hflip=True, vflip=True, rot90=True, crop=(6, 6))
    a = augment(image, mask, sample_rng(seed, epoch, index))
    b = augment(image, mask, sample_rng(seed, epoch, index))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # the mask moves with the image: pixel values follow their labels
    flat_image, flat_mask = a[0].reshape(-1, 3), a[1].reshape(-1)
    source = {tuple(v): m for v, m in zip(image.reshape(-1, 3).tolist(), mask.reshape(-1).tolist())}
    assert all(source[tuple(v)] == m for v, m in zip(flat_image.tolist(), flat_mask.tolist()))


def test_identity_and_bad_augmentation_arguments():
    image, mask = np.zeros((4, 6, 3), np.float32), np.zeros((4, 6), np.uint8)
    out = Augment()(image, mask, sample_rng(0, 0, 0))
    assert np.array_equal(out[0], image) and np.array_equal(out[1], mask)
    with pytest.raises(DatasetError, match="rot90 needs square images"):
        Augment(rot90=True)(image, mask, sample_rng(0, 0, 0))
    with pytest.raises(DatasetError, match=r"crop \(5, 5\) is larger than the image \(4, 6\)"):
        Augment(crop=(5, 5))(image, mask, sample_rng(0, 0, 0))
