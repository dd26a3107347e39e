"""Instance and panoptic post-processing, framework-neutral (numpy): embeddings -> instances -> panoptic map.

A network built with ``embedding_dim=E`` returns logits and a per-pixel embedding. Here, channels last:
``classes (N, H, W)`` integer labels (the argmax of the logits), ``embedding (N, H, W, E)`` float.
A panoptic map is ``(N, H, W, 2)`` integers holding ``(class id, instance id)`` per pixel, the format
``segparity.reference.metrics.panoptic_quality`` reads: things get one id per instance (unique within the image,
from 1), stuff and background get instance id 0.

Clustering follows De Brabandere et al. (2017), section 3.2: the loss pulls every pixel within
``delta_v`` of its instance's mean and pushes means ``2 * delta_d`` apart, so a ball of radius
``bandwidth = 2 * delta_v`` around a mean holds its instance (any two of its pixels are within
``2 * delta_v`` of each other) and no other instance (as long as ``2 * delta_v < 2 * delta_d - delta_v``).
Mean-shift with a flat kernel of that radius, started from an unassigned pixel, climbs to a mean; the
pixels within ``bandwidth`` of it form one instance; repeat until every pixel is assigned. Pixels are
then given to their nearest mean, and clusters smaller than ``min_pixels`` merged into their nearest
neighbour (stray boundary pixels would otherwise each count as a false positive in PQ).
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as connected_components


def default_bandwidth(delta_v: float = 0.5) -> float:
    """The clustering radius that matches a discriminative loss with pull margin ``delta_v``."""
    return 2.0 * delta_v


def _check_maps(classes: np.ndarray, embedding: np.ndarray | None = None) -> None:
    if classes.ndim != 3 or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"classes must be an integer (N, H, W) array, got {classes.dtype} {classes.shape}")
    if classes.size and classes.min() < 0:
        raise ValueError(f"classes must be non-negative class ids, found {classes.min()}")
    if embedding is None:
        return
    if embedding.ndim != 4 or embedding.shape[:3] != classes.shape:
        raise ValueError(f"embedding {embedding.shape} must be (N, H, W, E) with (N, H, W) = classes' "
                         f"{classes.shape}")
    if not np.all(np.isfinite(embedding)):
        raise ValueError("embedding contains NaN or infinity")


def _check_classes(things, stuffs=()) -> tuple[set, set]:
    things, stuffs = {int(c) for c in things}, {int(c) for c in stuffs}
    if things & stuffs:
        raise ValueError(f"classes {sorted(things & stuffs)} are in both things and stuffs")
    return things, stuffs


def cluster_embeddings(embedding: np.ndarray, mask: np.ndarray, bandwidth: float = 1.0, min_pixels: int = 16,
                       max_shifts: int = 30) -> np.ndarray:
    """Instance ids ``(H, W)`` int32 for the pixels of ``mask (H, W)`` bool, from ``embedding (H, W, E)``:
    0 outside the mask, 1..K inside, numbered in raster order of each instance's first pixel.

    Deterministic: seeds are taken in raster order. An empty mask gives all zeros.
    """
    embedding, mask = np.asarray(embedding, dtype=np.float64), np.asarray(mask, dtype=bool)
    if embedding.ndim != 3 or embedding.shape[:2] != mask.shape:
        raise ValueError(f"embedding {embedding.shape} must be (H, W, E) with (H, W) = mask's {mask.shape}")
    if not np.all(np.isfinite(embedding[mask])):
        raise ValueError("embedding contains NaN or infinity inside the mask")
    if not bandwidth > 0 or not (isinstance(min_pixels, int) and min_pixels >= 1):
        raise ValueError(f"bandwidth must be > 0 and min_pixels an int >= 1, got {bandwidth!r}, {min_pixels!r}")
    ids = np.zeros(mask.shape, dtype=np.int32)
    x = embedding[mask]  # (P, E), raster order
    if len(x) == 0:
        return ids
    owner = np.full(len(x), -1)
    centres: list[np.ndarray] = []
    while (owner < 0).any():
        seed = int(np.argmax(owner < 0))
        centre = x[seed]
        for _ in range(max_shifts):  # flat-kernel mean-shift: move to the mean of the pixels in the ball
            moved = x[np.linalg.norm(x - centre, axis=1) < bandwidth].mean(axis=0)
            done = np.linalg.norm(moved - centre) < 1e-3 * bandwidth
            centre = moved
            if done:
                break
        near = [k for k, c in enumerate(centres) if np.linalg.norm(c - centre) < bandwidth]
        if not near:  # a new mode; otherwise the climb ended at a mode already found
            centres.append(centre)
        k = near[0] if near else len(centres) - 1
        grab = (owner < 0) & (np.linalg.norm(x - centres[k], axis=1) < bandwidth)
        grab[seed] = True  # progress even when the seed is an outlier far from every mode
        owner[grab] = k
    centre_array = np.asarray(centres)
    owner = np.argmin(np.linalg.norm(x[:, None, :] - centre_array[None], axis=2), axis=1)
    keep = np.ones(len(centres), dtype=bool)
    while keep.sum() > 1:  # merge the smallest cluster under min_pixels into the nearest kept mean
        sizes = np.bincount(owner, minlength=len(centres))
        small = [k for k in np.argsort(sizes, kind="stable") if keep[k] and sizes[k] < min_pixels]
        if not small:
            break
        k = small[0]
        keep[k] = False
        members = owner == k
        distances = np.linalg.norm(x[members][:, None, :] - centre_array[None], axis=2)
        distances[:, ~keep] = np.inf
        owner[members] = np.argmin(distances, axis=1)
    _, first = np.unique(owner, return_index=True)
    order = np.unique(owner)[np.argsort(first)]  # clusters by their first pixel in raster order
    renumber = np.zeros(len(centres), dtype=np.int32)
    renumber[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    ids[mask] = renumber[owner]
    return ids


def panoptic_from_embeddings(classes: np.ndarray, embedding: np.ndarray, things, bandwidth: float = 1.0,
                             min_pixels: int = 16) -> np.ndarray:
    """Panoptic maps ``(N, H, W, 2)`` int32 from ``classes (N, H, W)`` and ``embedding (N, H, W, E)``.

    The pixels of all thing classes are clustered together, and each instance takes the class most of
    its pixels have (an object whose pixels the semantic head splits between two classes stays one
    instance); ids run 1..K per image. Pixels of every other class keep their class and instance id 0.
    """
    classes, embedding = np.asarray(classes), np.asarray(embedding)
    _check_maps(classes, embedding)
    things, _ = _check_classes(things)
    out = np.zeros(classes.shape + (2,), dtype=np.int32)
    out[..., 0] = classes
    for i in range(len(classes)):
        is_thing = np.isin(classes[i], sorted(things))
        ids = cluster_embeddings(embedding[i], is_thing, bandwidth, min_pixels)
        out[i, ..., 1] = ids
        for k in range(1, int(ids.max()) + 1):
            members = ids == k
            votes = np.bincount(classes[i][members])
            out[i, ..., 0][members] = int(np.argmax(votes))  # the majority class (the smallest id on a tie)
    return out


def panoptic_from_components(classes: np.ndarray, things) -> np.ndarray:
    """The semantic-only answer: each 8-connected region of a thing class is one instance
    (``skimage.measure.label``). Touching objects of one class become one instance; the baseline the
    embedding has to beat. ``classes (N, H, W)`` -> ``(N, H, W, 2)`` int32."""
    classes = np.asarray(classes)
    _check_maps(classes)
    things, _ = _check_classes(things)
    out = np.zeros(classes.shape + (2,), dtype=np.int32)
    out[..., 0] = classes
    for i in range(len(classes)):
        offset = 0
        for c in sorted(things):
            ids = connected_components(classes[i] == c, connectivity=2)
            out[i, ..., 1][ids > 0] = ids[ids > 0] + offset
            offset += int(ids.max())
    return out


def panoptic_target(classes: np.ndarray, instances: np.ndarray, things, stuffs=()) -> np.ndarray:
    """Ground truth ``(N, H, W, 2)`` from ``classes (N, H, W)`` and ``instances (N, H, W)`` ids (0 = none).

    Every pixel of a thing class must carry an instance id, and no pixel of another class may: an
    instance id without a thing class (or a thing pixel without an id) is an error naming the image
    and class. Stuff and void pixels get instance id 0.
    """
    classes, instances = np.asarray(classes), np.asarray(instances)
    _check_maps(classes)
    if instances.shape != classes.shape or not np.issubdtype(instances.dtype, np.integer):
        raise ValueError(f"instances must be integer ids shaped like classes {classes.shape}, got "
                         f"{instances.dtype} {instances.shape}")
    things, _ = _check_classes(things, stuffs)
    is_thing = np.isin(classes, sorted(things))
    stray = (instances != 0) & ~is_thing
    if stray.any():
        i, y, x = np.argwhere(stray)[0]
        raise ValueError(f"instance ids without a thing class: image {i} pixel ({y}, {x}) has instance "
                         f"{instances[i, y, x]} but class {classes[i, y, x]} (things: {sorted(things)}); "
                         f"{int(stray.sum())} such pixel(s)")
    orphan = (instances == 0) & is_thing
    if orphan.any():
        i, y, x = np.argwhere(orphan)[0]
        raise ValueError(f"thing pixels without an instance id: image {i} pixel ({y}, {x}) of class "
                         f"{classes[i, y, x]}; {int(orphan.sum())} such pixel(s)")
    return np.stack([classes, instances], axis=-1).astype(np.int32)


def evaluate_panoptic(predict, data, things, stuffs, bandwidth: float = 1.0, min_pixels: int = 16,
                      batch_size: int = 16) -> dict:
    """Score a two-headed model on every sample of ``data`` (an ``ArrayDataset`` with instance masks).

    ``predict(images (B, H, W, C)) -> (classes (B, H, W), embedding (B, H, W, E))`` is the framework's.
    Returns ``{"embedding": ..., "semantic_only": ...}``: for the clustered embedding and for connected
    components of the same predicted classes, ``segparity.reference.metrics.panoptic_quality`` (``pq``, ``sq``, ``rq``,
    ``n``, ``things``, ``stuff``, ``per_class``) plus ``instance_f1`` (matches at IoU > 0.5 over the set)
    and ``sbd`` (mean over images) of the thing instances.
    Also ``"maps"``: the first batch's target, embedding and semantic-only panoptic maps, for plots.
    """
    from segparity.reference.metrics import instance_scores, panoptic_quality, symmetric_best_dice

    targets, clustered, components, first = [], [], [], None
    for start in range(0, len(data), batch_size):
        indices = np.arange(start, min(start + batch_size, len(data)))
        images, masks, ids = data.batch(indices, epoch=0, instances=True)
        classes, embedding = predict(images)
        target = panoptic_target(masks, ids, things, stuffs)
        maps = (target, panoptic_from_embeddings(classes, embedding, things, bandwidth, min_pixels),
                panoptic_from_components(classes, things))
        targets.append(maps[0])
        clustered.append(maps[1])
        components.append(maps[2])
        first = first or maps
    target = np.concatenate(targets)
    scores = {}
    for name, predicted in (("embedding", np.concatenate(clustered)), ("semantic_only", np.concatenate(components))):
        result = panoptic_quality(predicted, target, things, stuffs)
        result["instance_f1"] = instance_scores(predicted[..., 1], target[..., 1])["f1"]
        result["sbd"] = symmetric_best_dice(predicted[..., 1], target[..., 1])
        scores[name] = result
    scores["maps"] = {"target": first[0], "embedding": first[1], "semantic_only": first[2]}
    return scores
