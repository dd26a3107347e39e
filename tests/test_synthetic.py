"""The built-in synthetic data: seeded, exact masks, valid labels."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from segparity.data.synthetic import one_hot, standardize, synthetic_batch, synthetic_sample


@given(st.integers(1, 3), st.integers(1, 4), st.integers(8, 40), st.integers(8, 40), st.integers(1, 5),
       st.integers(0, 2**31))
def test_batches_are_seeded_and_labels_in_range(n, c, h, w, k, seed):
    images, labels = synthetic_batch(n, c, h, w, k, seed)
    again, labels_again = synthetic_batch(n, c, h, w, k, seed)
    assert images.shape == (n, c, h, w) and images.dtype == np.float32
    assert labels.shape == (n, h, w) and labels.dtype == np.int64
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    assert labels.min() >= 0 and labels.max() < k
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_every_foreground_class_appears_and_colours_follow_masks():
    images, labels = synthetic_batch(4, 3, 64, 64, 4, seed=0)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    # inside one class the mean colour differs from the background's by far more than the noise
    background = images[0][:, labels[0] == 0].mean(axis=1)
    for cls in np.unique(labels[0])[1:]:
        assert np.abs(images[0][:, labels[0] == cls].mean(axis=1) - background).max() > 0.05


def test_ignore_pixels_and_one_hot():
    _, labels = synthetic_batch(2, 1, 16, 16, 3, seed=1, ignore_index=255, ignore_fraction=0.2)
    hot = one_hot(labels, 3, ignore_index=255)
    assert hot.shape == (2, 3, 16, 16)
    assert np.array_equal(hot.sum(axis=1) == 0, labels == 255)
    assert 0.1 < (labels == 255).mean() < 0.3


def test_standardize():
    images, _ = synthetic_batch(2, 3, 16, 16, 3, seed=2)
    z = standardize(images)
    assert np.allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5) and np.allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-4)


@given(st.integers(0, 500), st.integers(8, 48), st.integers(8, 48), st.integers(1, 6), st.integers(0, 2**31))
def test_samples_have_consistent_semantic_and_instance_masks(index, h, w, k, seed):
    image, semantic, instances = synthetic_sample(index, h, w, k, seed)
    assert image.shape == (h, w, 3) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    assert semantic.dtype == np.int64 and instances.dtype == np.int32
    assert np.array_equal(semantic == 0, instances == 0)  # background agrees
    ids = np.unique(instances[instances > 0])
    assert np.array_equal(ids, np.arange(1, len(ids) + 1))  # visible shapes numbered 1..K
    for i in ids:  # one instance, one class
        assert len(np.unique(semantic[instances == i])) == 1
    again = synthetic_sample(index, h, w, k, seed)
    assert all(np.array_equal(a, b) for a, b in zip((image, semantic, instances), again))


def test_synthetic_dataset_draws_two_shapes_of_a_class_as_two_instances():
    from segparity.data.dataset import synthetic_dataset
    data = synthetic_dataset(20, (48, 48), num_classes=3, seed=0)
    per_image = [len(np.unique(m[m > 0])) for m in data.instances]
    assert max(per_image) >= 3  # some image holds more instances than foreground classes
    assert np.array_equal(data.masks[7], synthetic_sample(7, 48, 48, 3, 0)[1])  # sample i depends on (seed, i) only
