"""What a parity run computes in each framework, and how two such traces are compared.

A *trace* is a dict of numpy arrays (canonical layouts: activations ``(N, C, H, W)``, weights as in
``segparity.weights.layout``), produced by ``segmentation_torch.harness.compute_trace`` and its Keras twin:

==========================  ==========================================================================
key                         value
==========================  ==========================================================================
``logits_eval``             model output in inference mode (BN uses running statistics)
``logits_train``            model output in training mode (BN uses batch statistics)
``loss_bce``, ``loss_ce``   BCE and CE with ignore_index, CE with class weights (``network_losses``)
``grad_input_bce/ce``       d(loss)/d(input image)
``grad_weights_bce/ce``     dict: canonical key -> d(loss)/d(weight), canonical layout
``bn_running``              dict: BN mean/var after one training forward (momentum/eps from the spec)
``weights_after_sgd``       dict: all canonical tensors after one SGD step on loss_bce + loss_ce
``weights_after_adam``      dict: the same after one Adam step
``loss_<name>``             each loss of ``segparity.reference.losses.report_catalogue`` on torch's float32
                            ``logits_train`` (the same input for both frameworks: the rows check the
                            loss ports; the network's are checked by the rows above)
``grad_logits_<name>``      d(loss_<name>)/d(its input), ``(N, C, H, W)``
``aux_eval``                torchvision's models built with ``aux_loss=True``: the ``"aux"`` output, inference
                            mode (their training losses add 0.5 times the loss of ``"aux"``, as torchvision's
                            reference training script; ``logits_*`` are their ``"out"``)
``embedding_eval``          networks built with ``embedding_dim > 0``: the embedding output, inference mode
``loss_discriminative``     ``DiscriminativeLoss()`` of the training-mode embedding against ``instance_targets``
``grad_weights_discriminative``  dict: canonical key -> d(loss_discriminative)/d(weight)
==========================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segparity.reference.losses import REPORT_LOSSES
from segparity.reference.panoptic import panoptic_from_components
from segparity.comparison.tolerance import ATOL, RTOL, Comparison, compare, merge

LOSS_ROWS = tuple(f"loss_{name}" for name in REPORT_LOSSES)
LOSS_GRADIENTS = tuple(f"grad_logits_{name}" for name in REPORT_LOSSES)
INSTANCE_QUANTITIES = ("embedding_eval", "loss_discriminative", "grad_weights_discriminative")
QUANTITIES = ("logits_eval", "aux_eval", "logits_train", "loss_bce", "loss_ce", "grad_input_bce", "grad_input_ce",
              "grad_weights_bce", "grad_weights_ce", "bn_running", "weights_after_sgd", "weights_after_adam",
              *LOSS_ROWS, *LOSS_GRADIENTS, *INSTANCE_QUANTITIES)
GRADIENTS = ("grad_input_bce", "grad_input_ce", "grad_weights_bce", "grad_weights_ce", *LOSS_GRADIENTS,
             "grad_weights_discriminative")
# Largest floor of a gradient or optimiser-step quantity (gradients in units of their scale) that widens
# the tolerance. Rounding alone reached 3.7e-5 on DeepLabV3+ input gradients (60 measured cases); a
# gradient jumps when a ReLU/max-pool kink is crossed, and such jumps are handled by the redraw rule
# (segparity.parity.suite), not by tolerance. Forward quantities are continuous in their inputs: no limit.
FLOOR_LIMIT = 5e-5
STEPS = ("weights_after_sgd", "weights_after_adam")


@dataclass(frozen=True)
class TraceSettings:
    """Loss and optimiser settings of a parity run, passed identically to both frameworks.

    Why Adam's epsilon is 1e-3 here and not torch's default 1e-8 (pitfall "adam_first_step_conditioning"):
    the first Adam step is ``lr * g / (|g| + eps)``, whose slope at ``g = 0`` is ``lr / eps``. Gradients
    are proven equal only to ``atol * max|g|`` (float32 sums; see ``segparity.comparison.tolerance``), so the two steps
    are guaranteed to agree within ``lr * atol * max|g| / eps``, which is <= atol exactly when
    ``eps >= lr * max|g|`` (max|g| is about 1 in the report's cases). With eps = 1e-8, a weight whose
    gradient is at rounding level (|g| ~ 1e-8) steps anywhere between 0 and lr in *either* framework,
    so the frameworks differ by up to 1e-3 there although both are right. The Adam formulas themselves
    are checked at eps = 1e-8 on identical gradients (``tests/test_optimizers.py``), where they agree.
    """

    class_weights: tuple[float, ...] | None = None  # CE class weights, one per class (two for one-logit networks)
    ignore_index: int | None = 255  # CE label to skip
    sgd_lr: float = 0.1
    sgd_momentum: float = 0.9
    adam_lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-3  # torch placement (outside sqrt(v_hat)); >= adam_lr * max|grad|, see the class docstring


def network_losses(num_classes: int, settings: TraceSettings) -> dict[str, tuple[str, dict]]:
    """``bce`` and ``ce``, the losses whose gradients the trace follows through the whole network, as
    ``(class_name, kwargs)`` of ``segmentation_*.losses``; both take the integer label map as target.

    A one-logit network (``num_classes == 1``, a binary mask) uses binary mode: ``class_weights`` then
    holds two entries, background and foreground. Otherwise BCE is one-vs-rest on the one-hot labels
    and CE is the softmax cross-entropy.
    """
    binary = num_classes == 1
    return {"bce": ("BinaryCrossEntropyLoss", dict(mode="binary" if binary else "multiclass",
                                                   ignore_index=settings.ignore_index)),
            "ce": ("CrossEntropyLoss", dict(mode="binary" if binary else "multiclass",
                                            class_weights=settings.class_weights, ignore_index=settings.ignore_index))}


def instance_targets(labels: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """Instance ids ``(N, H, W)`` int64 for the discriminative-loss rows: each 8-connected region of a
    foreground class in ``labels (N, H, W)`` is one instance (``segparity.reference.panoptic.panoptic_from_components``);
    background and ignored pixels are 0."""
    labels = np.asarray(labels)
    kept = np.where(labels == ignore_index, 0, labels) if ignore_index is not None else labels
    foreground = [int(c) for c in np.unique(kept) if c != 0]
    return panoptic_from_components(kept, things=foreground)[..., 1].astype(np.int64)


def optimizer_steps(settings: TraceSettings) -> list[tuple[str, dict]]:
    """``(optimizer name, build_optimizer keyword arguments)`` for the two optimiser-step quantities."""
    return [("sgd", dict(lr=settings.sgd_lr, momentum=settings.sgd_momentum)),
            ("adam", dict(lr=settings.adam_lr, betas=settings.adam_betas, eps=settings.adam_eps))]


def running_statistics(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The BN running mean/var entries of a canonical weight dict."""
    return {key: value for key, value in tensors.items() if key.endswith((".mean", ".var"))}


def gradient_scale(reference: dict[str, np.ndarray]) -> float:
    """Largest magnitude over every tensor of a reference gradient (see ``segparity.comparison.tolerance``)."""
    return max((float(np.max(np.abs(v))) for v in reference.values() if np.size(v)), default=0.0)


def float32_floors(trace32: dict, trace64: dict) -> dict[str, float]:
    """How far one framework's float32 trace is from its own float64 trace, per quantity: the float32
    floor, in the units ``compare_traces`` uses (gradients divided by their scale, the rest absolute).

    Train-mode passes through deep stacks of BatchNorm are only this accurate in float32 in *either*
    framework (pitfall ``float32_floor``): two correct ports can differ by up to twice it.
    A gradient or step floor above ``FLOOR_LIMIT`` is taken for a ReLU/max-pool kink crossed between
    float32 and float64, not rounding, and widens nothing.
    """
    floors = {}
    for quantity in QUANTITIES:
        if quantity not in trace64 or quantity not in trace32:
            continue
        a, b = trace32[quantity], trace64[quantity]
        pairs = [(a[k], b[k]) for k in b] if isinstance(b, dict) else [(a, b)]
        if not pairs:
            continue
        scale = gradient_scale(b if isinstance(b, dict) else {quantity: b}) if quantity in GRADIENTS else 1.0
        if scale > 0:
            floors[quantity] = max(float(np.max(np.abs(np.asarray(x, np.float64) - y), initial=0.0))
                                   for x, y in pairs) / scale
    return floors


def compare_traces(actual: dict, expected: dict, *, rtol: float = RTOL, atol: float = ATOL,
                   floors: dict[str, float] | None = None) -> dict[str, list[Comparison]]:
    """Quantity -> one Comparison per tensor (one for plain arrays, one per key for dicts).

    ``floors`` (``float32_floors`` of the reference framework): each quantity is compared at
    ``atol + 2 * floor`` instead of ``atol`` (gradients and steps: for floors up to ``FLOOR_LIMIT``).
    """
    out: dict[str, list[Comparison]] = {}
    for quantity in QUANTITIES:
        if quantity not in expected:
            continue
        floor = (floors or {}).get(quantity, 0.0)
        jumps_at_kinks = quantity in GRADIENTS or quantity in STEPS
        q_atol = atol + (0.0 if jumps_at_kinks and floor > FLOOR_LIMIT else 2.0 * floor)
        a, b = actual.get(quantity), expected[quantity]
        if isinstance(b, dict) and not b and not a:
            continue  # e.g. bn_running of a network without BatchNorm
        if isinstance(b, dict):
            if not isinstance(a, dict) or set(a) != set(b):
                missing = sorted(set(b) - set(a or {}))
                out[quantity] = [Comparison(quantity, float("inf"), float("inf"), rtol, q_atol, False,
                                            f"keys differ; missing: {missing}")]
                continue
            scale = gradient_scale(b) if quantity in GRADIENTS else None
            out[quantity] = [compare(a[k], b[k], rtol=rtol, atol=q_atol, quantity=f"{quantity}[{k}]", scale=scale)
                             for k in b]
        else:
            scale = gradient_scale({quantity: b}) if quantity in GRADIENTS else None
            out[quantity] = [compare(np.asarray(a), np.asarray(b), rtol=rtol, atol=q_atol, quantity=quantity,
                                     scale=scale)]
    return out


def summarise(per_tensor: dict[str, list[Comparison]]) -> list[Comparison]:
    """One Comparison per quantity (worst tensor wins), in QUANTITIES order."""
    rows = []
    for quantity, comparisons in per_tensor.items():
        single = len(comparisons) == 1 and comparisons[0].quantity == quantity
        rows.append(comparisons[0] if single else merge(comparisons, quantity))
    return rows
