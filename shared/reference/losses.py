"""numpy reference losses: the definitions both frameworks are checked against.

Arrays are channels-first and computed in float64: ``input`` is ``(N, C, H, W)`` (logits, or
probabilities with ``from_logits=False``); ``target`` depends on ``mode``:

=================  ===============================  ===================================================
mode               input                            target
=================  ===============================  ===================================================
``"binary"``       ``(N, 1, H, W)``, sigmoid        ``(N, 1, H, W)`` or ``(N, H, W)``: 0/1 (soft values
                                                    in between allowed where stated) or ``ignore_index``
``"multilabel"``   ``(N, C, H, W)``, sigmoid each   ``(N, C, H, W)``: each channel as in binary mode
``"multiclass"``   ``(N, C, H, W)``, softmax over C ``(N, H, W)`` integer labels ``0..C-1`` or
                                                    ``ignore_index``
=================  ===============================  ===================================================

Every loss is a scalar; each function's docstring states its reduction. Ignored entries (target equal
to ``ignore_index``; in multiclass mode the whole pixel) count nowhere, neither in sums nor in the
number averaged over. When nothing is left to average, the loss is 0.0, never NaN.

The overlap losses (Dice, Jaccard, Tversky) follow segmentation_models_pytorch: per-class sums over
the whole batch ``(N, H, W)``, a per-class score ``(numerator + smooth) / max(denominator + smooth,
eps)``, loss ``1 - score``, classes without a target pixel in the batch contributing 0, and the mean
taken over all C classes. So an image with an empty mask adds nothing to them, whatever is predicted:
pair them with a cross-entropy (``combined``) to penalise false positives on empty images.
"""

from __future__ import annotations

import numpy as np

MODES = ("binary", "multilabel", "multiclass")


def check_mode(mode: str, loss: str, allowed: tuple[str, ...] = MODES) -> None:
    """Raise a ``ValueError`` naming ``loss`` unless ``mode`` is one of ``allowed``."""
    if mode not in allowed:
        raise ValueError(f"{loss}: mode must be one of {', '.join(map(repr, allowed))}, got {mode!r}")


def check_fraction(name: str, value: float, loss: str) -> None:
    """Raise a ``ValueError`` naming ``loss`` and ``name`` unless ``0 <= value <= 1``."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{loss}: {name} must lie in [0, 1], got {value}")


def check_non_negative(name: str, value: float, loss: str) -> None:
    if not value >= 0.0:
        raise ValueError(f"{loss}: {name} must be >= 0, got {value}")


# --- input preparation -------------------------------------------------------------------------------

def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form


def log_softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def probabilities(input: np.ndarray, mode: str, from_logits: bool) -> np.ndarray:
    """``(N, C, H, W)`` probabilities: softmax over C (multiclass) or sigmoid of each entry."""
    x = np.asarray(input, dtype=np.float64)
    if not from_logits:
        return x
    return np.exp(log_softmax(x, axis=1)) if mode == "multiclass" else sigmoid(x)


def targets_and_mask(target: np.ndarray, mode: str, num_classes: int,
                     ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The target as ``(N, C, H, W)`` float64 (one-hot in multiclass mode; 0 where ignored) and the
    ``(N, C, H, W)`` float64 mask of counted entries (1 counted, 0 ignored)."""
    t = np.asarray(target)
    if mode == "binary" and t.ndim == 3:
        t = t[:, None]
    valid = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    if mode == "multiclass":
        classes = np.arange(num_classes)[None, :, None, None]
        onehot = (np.where(valid, t, 0)[:, None] == classes) & valid[:, None]
        return onehot.astype(np.float64), np.broadcast_to(valid[:, None], onehot.shape).astype(np.float64)
    return np.where(valid, t, 0).astype(np.float64), valid.astype(np.float64)


def masked_mean(values: np.ndarray, valid: np.ndarray) -> float:
    """Mean of ``values`` over counted entries; 0.0 when none is counted."""
    count = valid.sum()
    return 0.0 if count == 0 else float((values * valid).sum() / count)


# --- cross-entropies ---------------------------------------------------------------------------------

def binary_cross_entropy(input, target, mode="binary", from_logits=True, ignore_index=None,
                         label_smoothing=0.0, eps=1e-7) -> float:
    """Mean over counted entries of ``-t log p - (1 - t) log(1 - p)``, ``p = sigmoid(input)``.

    multiclass mode compares each class channel with the one-hot target (one-vs-rest). Label
    smoothing moves targets towards 1/2: ``t (1 - label_smoothing) + label_smoothing / 2``. With
    logits the overflow-free form ``max(x, 0) - x t + log(1 + exp(-|x|))`` is used; probabilities are
    clipped to ``[eps, 1 - eps]`` first (Keras's convention; ``torch.nn.BCELoss`` clamps the log at
    -100 instead).
    """
    x = np.asarray(input, dtype=np.float64)
    t, valid = targets_and_mask(target, mode, x.shape[1], ignore_index)
    t = t * (1.0 - label_smoothing) + label_smoothing / 2.0
    if from_logits:
        elementwise = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    else:
        p = np.clip(x, eps, 1.0 - eps)
        elementwise = -(t * np.log(p) + (1.0 - t) * np.log(1.0 - p))
    return masked_mean(elementwise, valid)


def bce_with_logits(logits: np.ndarray, target: np.ndarray) -> float:
    """Mean over all elements of BCE with logits; ``target`` has the logits' shape (multilabel mode)."""
    return binary_cross_entropy(logits, target, mode="multilabel")


def two_class_input(input: np.ndarray, from_logits: bool) -> np.ndarray:
    """Binary/multilabel input ``(N, C, H, W)`` as two-class input ``(N, 2, C*H, W)``: logits ``[0, x]``
    (whose softmax is ``[1 - sigmoid(x), sigmoid(x)]``) or probabilities ``[1 - p, p]``."""
    x = np.asarray(input, dtype=np.float64)
    n, c, h, w = x.shape
    x = x.reshape(n, 1, c * h, w)
    other = np.zeros_like(x) if from_logits else 1.0 - x
    return np.concatenate([other, x], axis=1)


def cross_entropy(input, target, mode="multiclass", from_logits=True, class_weights=None, ignore_index=None,
                  label_smoothing=0.0, eps=1e-7) -> float:
    """Weighted mean of ``-sum_c q_c log p_c`` over counted pixels, ``q`` the (smoothed) one-hot target.

    ``q = (1 - label_smoothing) onehot + label_smoothing / C``. Pixel weights are
    ``class_weights[label]``; the sum is divided by the sum of the counted pixels' weights and the
    smoothing term weights class ``c`` by ``class_weights[c]`` (exactly ``torch.nn.functional.
    cross_entropy(weight=, ignore_index=, label_smoothing=)``). Binary and multilabel modes are the
    two-class case on ``[0, x]`` per entry (``two_class_input``), with integer 0/1 targets and two
    class weights (background, foreground). Probabilities are clipped below at ``eps`` before the log.
    When every pixel is ignored the loss is 0.0 (torch returns NaN).
    """
    x = np.asarray(input, dtype=np.float64)
    labels = np.asarray(target)
    if mode != "multiclass":
        x = two_class_input(x, from_logits)
        labels = (labels[:, None] if mode == "binary" and labels.ndim == 3 else labels)
        labels = labels.reshape(x.shape[0], x.shape[2], x.shape[3])
    num_classes = x.shape[1]
    logp = log_softmax(x, axis=1) if from_logits else np.log(np.maximum(x, eps))
    keep = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe = np.where(keep, labels, 0)
    w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    pixel_w = w[safe] * keep
    denominator = pixel_w.sum()
    if denominator == 0:
        return 0.0
    nll = -np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
    smooth = -(logp * w[None, :, None, None]).sum(axis=1) * keep / num_classes
    return float(((1.0 - label_smoothing) * (pixel_w * nll).sum() + label_smoothing * smooth.sum()) / denominator)


# --- overlap losses ----------------------------------------------------------------------------------

def overlap_sums(input, target, mode, from_logits, ignore_index):
    """Per-class ``(intersection, sum of p, sum of t)`` over ``(N, H, W)`` of counted entries, shape ``(C,)``."""
    p = probabilities(input, mode, from_logits)
    t, valid = targets_and_mask(target, mode, p.shape[1], ignore_index)
    p = p * valid
    dims = (0, 2, 3)
    return (p * t).sum(dims), p.sum(dims), t.sum(dims)


def mean_over_classes(per_class_loss: np.ndarray, target_sum: np.ndarray) -> float:
    """Mean over all C classes, a class with no target pixel contributing 0 (segmentation_models_pytorch)."""
    return float(np.mean(per_class_loss * (target_sum > 0)))


def dice_loss(input, target, mode="multiclass", from_logits=True, smooth=0.0, eps=1e-7, ignore_index=None) -> float:
    """``1 - (2 I + smooth) / max(sum p + sum t + smooth, eps)`` per class, ``mean_over_classes``."""
    inter, p_sum, t_sum = overlap_sums(input, target, mode, from_logits, ignore_index)
    score = (2.0 * inter + smooth) / np.maximum(p_sum + t_sum + smooth, eps)
    return mean_over_classes(1.0 - score, t_sum)


def jaccard_loss(input, target, mode="multiclass", from_logits=True, smooth=0.0, eps=1e-7, ignore_index=None) -> float:
    """``1 - (I + smooth) / max(sum p + sum t - I + smooth, eps)`` per class, ``mean_over_classes``."""
    inter, p_sum, t_sum = overlap_sums(input, target, mode, from_logits, ignore_index)
    score = (inter + smooth) / np.maximum(p_sum + t_sum - inter + smooth, eps)
    return mean_over_classes(1.0 - score, t_sum)


def tversky_loss(input, target, mode="multiclass", from_logits=True, alpha=0.5, beta=0.5, gamma=1.0,
                 smooth=0.0, eps=1e-7, ignore_index=None) -> float:
    """``(mean_over_classes(1 - TI)) ** gamma`` with ``TI = (I + smooth) / max(I + alpha FP + beta FN +
    smooth, eps)``, ``FP = sum p (1 - t)``, ``FN = sum (1 - p) t`` (segmentation_models_pytorch applies
    gamma to the class mean too). alpha = beta = 0.5 is Dice, 1 and 1 is Jaccard; gamma != 1 is the
    focal Tversky loss."""
    inter, p_sum, t_sum = overlap_sums(input, target, mode, from_logits, ignore_index)
    false_pos, false_neg = p_sum - inter, t_sum - inter
    score = (inter + smooth) / np.maximum(inter + alpha * false_pos + beta * false_neg + smooth, eps)
    return mean_over_classes(1.0 - score, t_sum) ** gamma


# --- focal -------------------------------------------------------------------------------------------

def focal_loss(input, target, mode="multiclass", from_logits=True, alpha=None, gamma=2.0, ignore_index=None,
               eps=1e-7) -> float:
    """Mean over counted entries of ``-a (1 - p_t) ** gamma log p_t`` (Lin et al. 2017).

    Binary/multilabel: ``p_t = p t + (1 - p)(1 - t)`` per entry, ``a = alpha t + (1 - alpha)(1 - t)``
    (``torchvision.ops.sigmoid_focal_loss``); multiclass: ``p_t`` is the softmax probability of the
    pixel's label and ``a = alpha`` (Keras ``CategoricalFocalCrossentropy``). ``alpha=None``: ``a = 1``.
    gamma = 0 and no alpha is the cross-entropy.
    """
    x = np.asarray(input, dtype=np.float64)
    t, valid = targets_and_mask(target, mode, x.shape[1], ignore_index)
    if mode == "multiclass":
        logp = log_softmax(x, axis=1) if from_logits else np.log(np.maximum(x, eps))
        log_pt = (logp * t).sum(axis=1)  # (N, H, W); 0 at ignored pixels
        loss = -((1.0 - np.exp(log_pt)) ** gamma) * log_pt * (1.0 if alpha is None else alpha)
        return masked_mean(loss, valid[:, 0])
    if from_logits:
        ce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        p = sigmoid(x)
    else:
        p = np.clip(x, eps, 1.0 - eps)
        ce = -(t * np.log(p) + (1.0 - t) * np.log(1.0 - p))
    p_t = p * t + (1.0 - p) * (1.0 - t)
    loss = ce * (1.0 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * t + (1.0 - alpha) * (1.0 - t))
    return masked_mean(loss, valid)


# --- Lovász ------------------------------------------------------------------------------------------

def lovasz_grad(gt_sorted: np.ndarray) -> np.ndarray:
    """Gradient of the Lovász extension of the Jaccard loss at errors sorted in decreasing order
    (Berman et al. 2018, Alg. 1): ``J_i - J_{i-1}`` with ``J_i = 1 - |gt - gt[:i]| / |gt + !gt[:i]|``."""
    gts = gt_sorted.sum()
    intersection = gts - np.cumsum(gt_sorted)
    union = gts + np.cumsum(1.0 - gt_sorted)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def sort_order(errors: np.ndarray) -> np.ndarray:
    """Indices sorting ``errors`` decreasingly; ties keep their original order."""
    return np.argsort(-errors, kind="stable")


def lovasz_hinge(logits: np.ndarray, target: np.ndarray, valid: np.ndarray) -> float:
    """Lovász hinge over all counted entries together: ``relu(1 - x (2t - 1))`` sorted, dot the Lovász
    gradient. 0.0 when nothing is counted."""
    keep = valid.astype(bool)
    x, t = np.asarray(logits, np.float64)[keep], target[keep]
    if x.size == 0:
        return 0.0
    errors = 1.0 - x * (2.0 * t - 1.0)
    order = sort_order(errors)
    return float(np.dot(np.maximum(errors[order], 0.0), lovasz_grad(t[order])))


def lovasz_softmax(probs: np.ndarray, onehot: np.ndarray, valid: np.ndarray) -> float:
    """Lovász-softmax: for each class present among counted pixels, ``|onehot - p|`` sorted, dot the
    Lovász gradient; the mean over those classes (0.0 when none is present)."""
    keep = valid[:, 0].astype(bool)  # (N, H, W)
    losses = []
    for c in range(probs.shape[1]):
        fg, p = onehot[:, c][keep], probs[:, c][keep]
        if fg.sum() == 0:
            continue
        errors = np.abs(fg - p)
        order = sort_order(errors)
        losses.append(np.dot(errors[order], lovasz_grad(fg[order])))
    return float(np.mean(losses)) if losses else 0.0


def lovasz_loss(input, target, mode="multiclass", from_logits=True, ignore_index=None) -> float:
    """Lovász hinge (binary, multilabel: every entry of the batch as one binary problem, targets 0/1,
    needs logits) or Lovász-softmax (multiclass; classes present in the batch's target)."""
    x = np.asarray(input, dtype=np.float64)
    t, valid = targets_and_mask(target, mode, x.shape[1], ignore_index)
    if mode == "multiclass":
        return lovasz_softmax(probabilities(x, mode, from_logits), t, valid)
    return lovasz_hinge(x, t, valid)


# --- registry ----------------------------------------------------------------------------------------

REFERENCES = {
    "BinaryCrossEntropyLoss": binary_cross_entropy,
    "CrossEntropyLoss": cross_entropy,
    "DiceLoss": dice_loss,
    "JaccardLoss": jaccard_loss,
    "TverskyLoss": tversky_loss,
    "FocalLoss": focal_loss,
    "LovaszLoss": lovasz_loss,
}


def reference(class_name: str, kwargs: dict, input, target) -> float:
    """The numpy reference of the framework loss ``class_name(**kwargs)`` on ``input``, ``target``
    (``CombinedLoss``: ``kwargs = {"losses": [(class_name, kwargs), ...], "weights": [...]}``)."""
    if class_name == "CombinedLoss":
        weights = kwargs.get("weights") or [1.0] * len(kwargs["losses"])
        return float(sum(w * reference(name, kw, input, target) for w, (name, kw) in zip(weights, kwargs["losses"])))
    return REFERENCES[class_name](input, target, **kwargs)


def build(module, class_name: str, kwargs: dict):
    """Instantiate ``module.<class_name>(**kwargs)`` (a framework's ``losses`` module), nested for
    ``CombinedLoss``; the same descriptions drive both frameworks and ``reference``."""
    if class_name == "CombinedLoss":
        parts = [build(module, name, kw) for name, kw in kwargs["losses"]]
        return module.CombinedLoss(parts, kwargs.get("weights"))
    return getattr(module, class_name)(**kwargs)


# --- the parity report's loss rows -------------------------------------------------------------------

REPORT_LOSSES = ("dice", "jaccard", "tversky", "focal", "lovasz", "combined")


def report_catalogue(num_classes: int, ignore_index: int | None) -> dict[str, tuple[str, dict]]:
    """The losses ``segparity report`` evaluates on each network's logits, ``name: (class_name, kwargs)``:
    binary mode for one-logit networks, multiclass otherwise, with non-default options. (BCE and CE
    have their own rows, with gradients through the whole network.)

    The Lovász-softmax entry takes probabilities (``from_logits=False``): its gradient is set by the
    sort order of ``|onehot - p|``, and softmax results that differ in the last bit between frameworks
    can order near-equal errors differently (pitfall ``lovasz_sort_ties``); the report gives both
    frameworks the same float32 probabilities instead.
    """
    mode = "binary" if num_classes == 1 else "multiclass"
    base = dict(mode=mode, ignore_index=ignore_index)
    smoothed_ce = ("CrossEntropyLoss", dict(base, label_smoothing=0.1))
    return {
        "dice": ("DiceLoss", dict(base, smooth=1.0)),
        "jaccard": ("JaccardLoss", dict(base)),
        "tversky": ("TverskyLoss", dict(base, alpha=0.3, beta=0.7, gamma=4 / 3)),
        "focal": ("FocalLoss", dict(base, alpha=0.25, gamma=2.0)),
        "lovasz": ("LovaszLoss", dict(base, from_logits=mode == "binary")),
        "combined": ("CombinedLoss", dict(losses=[smoothed_ce, ("DiceLoss", dict(base))], weights=[1.0, 0.5])),
    }


def report_inputs(logits: np.ndarray, num_classes: int, ignore_index: int | None) -> dict[str, tuple[str, dict, np.ndarray]]:
    """``report_catalogue`` with each loss's float32 input: ``logits (N, C, H, W)`` or, for a loss with
    ``from_logits=False``, their softmax computed here once for both frameworks."""
    out = {}
    for name, (class_name, kwargs) in report_catalogue(num_classes, ignore_index).items():
        inputs = logits if kwargs.get("from_logits", True) else probabilities(logits, "multiclass", True)
        out[name] = (class_name, kwargs, np.asarray(inputs, dtype=np.float32))
    return out
