"""Instance and panoptic post-processing (segparity.reference.panoptic) and the synthetic instance data it is trained on."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.segmentation import relabel_sequential

from segparity.reference.metrics import panoptic_quality
from segparity.reference.panoptic import (cluster_embeddings, default_bandwidth, panoptic_from_components, panoptic_from_embeddings,
                             panoptic_target)
from segparity.data.synthetic import synthetic_instance_sample, task_classes


def _embed(ids: np.ndarray, centres: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    """An embedding ``(H, W, E)`` where instance ``k`` sits at ``centres[k]`` plus uniform noise in a ball."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(size=ids.shape + (centres.shape[1],))
    offsets *= noise * rng.uniform(size=ids.shape + (1,)) / np.linalg.norm(offsets, axis=-1, keepdims=True)
    return centres[ids] + offsets


def test_two_touching_instances_of_one_class_are_separated():
    ids = np.zeros((8, 8), dtype=np.int64)
    ids[2:6, 1:4], ids[2:6, 4:7] = 1, 2  # side by side: one connected region of the class
    centres = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0]])  # 2 * delta_d = 3 apart
    embedding = _embed(ids, centres, noise=0.5)  # every pixel within delta_v = 0.5 of its mean
    found = cluster_embeddings(embedding, ids > 0, bandwidth=default_bandwidth(0.5), min_pixels=1)
    assert np.array_equal(found, ids)  # numbered in raster order of each instance's first pixel
    classes = (ids > 0).astype(np.int64)[None]
    assert panoptic_from_components(classes, things=[1])[0, ..., 1].max() == 1  # semantic only: one instance


def test_empty_mask_and_stray_pixels():
    embedding = np.zeros((5, 5, 3))
    assert not cluster_embeddings(embedding, np.zeros((5, 5), bool)).any()
    ids = np.zeros((6, 6), dtype=np.int64)
    ids[:, :3] = 1
    embedding = _embed(ids, np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]), noise=0.3)
    embedding[0, 0] = [9.0, 9.0, 9.0]  # one pixel far from every mean: its own cluster of 1 pixel...
    kept = cluster_embeddings(embedding, ids > 0, min_pixels=1)
    assert kept.max() == 2 and kept[0, 0] == 1 and (kept[ids > 0][1:] == 2).all()
    merged = cluster_embeddings(embedding, ids > 0, min_pixels=4)  # ...merged into the nearest one here
    assert merged.max() == 1 and (merged[ids > 0] == 1).all() and (merged[ids == 0] == 0).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**16))
def test_clustering_recovers_any_instance_map_the_loss_is_satisfied_on(count, seed):
    """Means 2 * delta_d apart, pixels within delta_v of their mean (the loss at zero): clustering finds
    exactly the instances, whatever their shapes (random, even scattered)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, count + 1, size=(12, 12))
    centres = np.zeros((count + 1, 3))
    for k in range(1, count + 1):  # greedy: every mean at least 3.0 from the others
        while True:
            candidate = rng.uniform(-6, 6, size=3)
            if all(np.linalg.norm(candidate - centres[j]) >= 3.0 for j in range(1, k)):
                centres[k] = candidate
                break
    embedding = _embed(ids, centres, noise=0.5, seed=seed)
    found = cluster_embeddings(embedding, ids > 0, bandwidth=1.0, min_pixels=1)
    assert np.array_equal(relabel_sequential(found)[0] > 0, ids > 0)
    pairs = set(zip(found[ids > 0].tolist(), ids[ids > 0].tolist()))
    assert len(pairs) == len(set(ids[ids > 0].tolist())) == len({p for p, _ in pairs})  # one-to-one


def test_instance_takes_its_majority_class_and_stuff_keeps_id_zero():
    classes = np.zeros((1, 6, 6), dtype=np.int64)
    classes[0, :, 3:] = 3  # stuff
    classes[0, 1:5, :3] = 1
    classes[0, 1, 0] = 2  # the semantic head got one pixel of the object wrong
    ids = np.where(np.isin(classes[0], [1, 2]), 1, 0)
    embedding = _embed(ids, np.array([[5.0, 5.0], [0.0, 0.0]]), noise=0.2)[None]
    out = panoptic_from_embeddings(classes, embedding, things=[1, 2], min_pixels=1)
    assert (out[0, ..., 0][ids == 1] == 1).all() and (out[0, ..., 1][ids == 1] == 1).all()
    assert (out[0, ..., 1][classes[0] == 3] == 0).all() and (out[0, ..., 0][classes[0] == 3] == 3).all()


@pytest.mark.parametrize("task, classes", [("instance", 3), ("panoptic", 4)])
def test_synthetic_instances_defeat_semantic_only_segmentation(task, classes):
    """In every sample some class's shapes touch or overlap: connected components of the exact semantic
    map miss instances, while exact embeddings clustered score PQ 1."""
    things, stuffs = task_classes(task, classes)
    samples = [synthetic_instance_sample(i, 48, 48, len(things), seed=3, ground=task == "panoptic") for i in range(12)]
    semantic = np.stack([s[1] for s in samples])
    instances = np.stack([s[2] for s in samples])
    target = panoptic_target(semantic, instances, things, stuffs)
    components = panoptic_from_components(semantic, things)
    for image, truth in zip(components, target):
        assert len(np.unique(image[..., 1])) < len(np.unique(truth[..., 1]))  # merged in every image
    merged = panoptic_quality(components, target, things, stuffs)
    centres = 3.0 * np.eye(instances.max() + 1)  # one axis per instance: means 3 * sqrt(2) apart
    perfect = panoptic_from_embeddings(semantic, centres[instances], things, bandwidth=1.0)
    exact = panoptic_quality(perfect, target, things, stuffs)
    assert exact["pq"] == 1.0 and exact["things"]["pq"] == 1.0
    assert merged["things"]["pq"] < 0.8 and merged["things"]["rq"] < 0.85
    if task == "panoptic":
        assert set(np.unique(semantic)) == set(range(classes)) and merged["stuff"]["pq"] == 1.0


def test_synthetic_instance_sample_is_deterministic_and_well_formed():
    image, semantic, instances = synthetic_instance_sample(5, 40, 48, 2, seed=1, ground=True)
    again = synthetic_instance_sample(5, 40, 48, 2, seed=1, ground=True)
    assert all(np.array_equal(a, b) for a, b in zip((image, semantic, instances), again))
    assert image.shape == (40, 48, 3) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    assert semantic.dtype == np.int64 and instances.dtype == np.int32
    assert set(np.unique(semantic)) <= {0, 1, 2, 3} and (semantic == 3).any()  # the ground band
    assert np.array_equal(np.unique(instances), np.arange(instances.max() + 1))  # 1..K, each visible
    assert ((instances > 0) == np.isin(semantic, [1, 2])).all()  # every thing pixel has an id, nothing else
    other = synthetic_instance_sample(6, 40, 48, 2, seed=1, ground=True)
    assert not np.array_equal(other[2], instances)


def test_task_classes():
    assert task_classes("instance", 3) == ((1, 2), (0,))
    assert task_classes("panoptic", 4) == ((1, 2), (0, 3))
    with pytest.raises(ValueError, match="panoptic task needs at least 3 classes"):
        task_classes("panoptic", 2)
    with pytest.raises(ValueError, match="task must be one of"):
        task_classes("detection", 3)


def test_bad_input_is_named():
    classes = np.zeros((1, 4, 4), dtype=np.int64)
    classes[0, 0, 0] = 1
    instances = np.zeros((1, 4, 4), dtype=np.int64)
    instances[0, 0, 0] = 1
    instances[0, 3, 3] = 2  # an instance id on background
    with pytest.raises(ValueError, match=r"instance ids without a thing class: image 0 pixel \(3, 3\) has instance 2"):
        panoptic_target(classes, instances, things=[1], stuffs=[0])
    with pytest.raises(ValueError, match=r"thing pixels without an instance id: image 0 pixel \(0, 0\)"):
        panoptic_target(classes, np.zeros_like(instances), things=[1], stuffs=[0])
    with pytest.raises(ValueError, match=r"embedding \(1, 4, 5, 2\) must be \(N, H, W, E\)"):
        panoptic_from_embeddings(classes, np.zeros((1, 4, 5, 2)), things=[1])
    with pytest.raises(ValueError, match="embedding contains NaN"):
        panoptic_from_embeddings(classes, np.full((1, 4, 4, 2), np.nan), things=[1])
    with pytest.raises(ValueError, match="classes must be an integer"):
        panoptic_from_components(classes.astype(np.float32), things=[1])
    with pytest.raises(ValueError, match="in both things and stuffs"):
        panoptic_target(classes, instances * 0, things=[1], stuffs=[1])
    with pytest.raises(ValueError, match="classes must be non-negative"):
        panoptic_from_components(classes - 1, things=[1])
    with pytest.raises(ValueError, match="NaN or infinity inside the mask"):
        cluster_embeddings(np.full((4, 4, 2), np.inf), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match=r"mask's \(4, 4\)"):
        cluster_embeddings(np.zeros((4, 3, 2)), np.ones((4, 4), bool))
    empty = panoptic_target(np.zeros((2, 4, 4), np.int64), np.zeros((2, 4, 4), np.int64), things=[1], stuffs=[0])
    assert not panoptic_from_embeddings(empty[..., 0], np.zeros((2, 4, 4, 3)), things=[1])[..., 1].any()
