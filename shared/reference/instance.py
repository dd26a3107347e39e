"""Instance segmentation, framework-neutral: the discriminative loss's numpy reference and its checks.

The discriminative loss (De Brabandere, Neven, Van Gool, *Semantic Instance Segmentation with a
Discriminative Loss Function*, 2017) acts on a per-pixel embedding ``(N, E, H, W)`` (torch layout) and
an integer instance map ``(N, H, W)``. Per image, with ``C`` instances (labels other than
``background``), ``mu_c`` the mean embedding of instance ``c`` and ``N_c`` its pixel count:

- variance (pull): ``L_var = 1/C sum_c 1/N_c sum_{i in c} [||mu_c - x_i|| - delta_v]_+^2``
- distance (push): ``L_dist = 1/(C(C-1)) sum_{a != b} [2 delta_d - ||mu_a - mu_b||]_+^2`` (0 when C = 1)
- regulariser: ``L_reg = 1/C sum_c ||mu_c||``

``loss = alpha L_var + beta L_dist + gamma L_reg`` per image; the batch loss is the mean over the
images holding at least one instance, and 0.0 (with zero gradient) when none does. ``background=None``
makes every label an instance. Both frameworks compute the norm as ``sqrt`` of the sum of squares with
the gradient 0 where the norm is 0 (a pixel exactly at its mean): TensorFlow's ``norm`` would give NaN
there, times the hinge's 0 (pitfall ``pow_gradient_at_zero``'s cousin).
"""

from __future__ import annotations

import numpy as np

from segparity.reference.losses import check_non_negative


def check_discriminative(delta_v: float, delta_d: float, alpha: float, beta: float, gamma: float) -> None:
    """Margins positive, weights non-negative; errors name the argument."""
    for name, value in (("delta_v", delta_v), ("delta_d", delta_d)):
        if not value > 0:
            raise ValueError(f"DiscriminativeLoss: {name} must be > 0, got {value!r}")
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_non_negative(name, value, "DiscriminativeLoss")


def check_embedding_target(embedding_shape: tuple, target_shape: tuple, *, layout: str,
                           input_name: str = "embedding", target_name: str = "instances") -> None:
    """An embedding ``(N, E, H, W)`` (``layout="NCHW"``) or ``(N, H, W, E)`` (``"NHWC"``) and an instance
    map ``(N, H, W)`` of the same batch and size; ``None`` dimensions (tracing) are skipped."""
    if len(embedding_shape) != 4:
        raise ValueError(f"{input_name} must be 4-D {tuple(layout.replace('C', 'E'))}, got shape {tuple(embedding_shape)}")
    if len(target_shape) != 3:
        raise ValueError(f"{target_name} must be an (N, H, W) instance map, got shape {tuple(target_shape)}")
    dims = dict(zip(layout, embedding_shape))
    for axis, size in zip("NHW", target_shape):
        if size is not None and dims[axis] is not None and size != dims[axis]:
            raise ValueError(f"{input_name} {tuple(embedding_shape)} ({layout.replace('C', 'E')}) and {target_name} "
                             f"{tuple(target_shape)} (N, H, W) differ in {axis}: {dims[axis]} vs {size}")


def check_instance_dtype(name: str, dtype: str) -> None:
    if not (dtype.startswith("int") or dtype.startswith("uint")):
        raise TypeError(f"{name} must hold integer instance ids, got dtype {dtype}")


def discriminative_loss(embedding, instances, delta_v: float = 0.5, delta_d: float = 1.5, alpha: float = 1.0,
                        beta: float = 1.0, gamma: float = 0.001, background: int | None = 0) -> float:
    """The loss of the module docstring, in float64, one image and one instance at a time (written for
    reading, not speed). ``embedding (N, E, H, W)``, ``instances (N, H, W)`` integers."""
    check_discriminative(delta_v, delta_d, alpha, beta, gamma)
    x = np.asarray(embedding, dtype=np.float64)
    labels = np.asarray(instances)
    check_embedding_target(x.shape, labels.shape, layout="NCHW")
    check_instance_dtype("instances", str(labels.dtype))
    losses = []
    for image, label in zip(x, labels):
        ids = [i for i in np.unique(label) if background is None or i != background]
        if not ids:
            continue
        pixels = [image[:, label == i].T for i in ids]  # each (N_c, E)
        means = [p.mean(axis=0) for p in pixels]
        var = np.mean([np.mean(np.maximum(np.linalg.norm(p - m, axis=1) - delta_v, 0.0) ** 2)
                       for p, m in zip(pixels, means)])
        c = len(ids)
        pushes = [max(2 * delta_d - np.linalg.norm(means[a] - means[b]), 0.0) ** 2
                  for a in range(c) for b in range(c) if a != b]
        dist = sum(pushes) / (c * (c - 1)) if c > 1 else 0.0
        reg = np.mean([np.linalg.norm(m) for m in means])
        losses.append(alpha * var + beta * dist + gamma * reg)
    return float(np.mean(losses)) if losses else 0.0
