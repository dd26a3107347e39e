"""Optimisers with every hyper-parameter explicit, PyTorch side."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from segmentation_torch.weights import tensor_refs
from segparity.weights.layout import permute_axes

OPTIMIZERS = ("sgd", "adam")
# optimiser -> its per-parameter state, named as torch names it (canonical names of the checkpoint)
SLOTS = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq")}


def build_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``"sgd"``: ``torch.optim.SGD`` (heavy-ball ``momentum``, no dampening, no Nesterov).
    ``"adam"``: ``torch.optim.Adam``: ``w -= lr * m_hat / (sqrt(v_hat) + eps)``, eps outside the sqrt.
    ``weight_decay`` is L2 added to the gradient (torch's coupled form) in both.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=0.0, nesterov=False,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                foreach=False)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def legacy_decay(optimizer: torch.optim.Optimizer, lr: float, lr_decay: float,
                 step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Keras 2's legacy ``decay`` argument as a per-batch schedule: optimiser step ``t`` (0-based) uses
    ``lr * (1 / (1 + lr_decay * t))`` (``segparity.training.config.decayed_lr``). Call ``.step()`` after each
    ``optimizer.step()``. ``step``: the optimiser steps already taken (a resumed run)."""
    for group in optimizer.param_groups:
        group["initial_lr"] = lr  # what LambdaLR scales (it needs it to start past step 0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0 / (1.0 + lr_decay * t), last_epoch=step - 1)


def _slots(optimizer: torch.optim.Optimizer) -> tuple[str, ...]:
    if isinstance(optimizer, torch.optim.SGD):
        return SLOTS["sgd"] if optimizer.defaults["momentum"] else ()
    return SLOTS["adam"]


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> dict[str, np.ndarray]:
    """The optimiser's state in canonical layout: ``"<weight key>.<slot>"`` float32 arrays shaped like
    the weight (slots ``SLOTS``, in torch's convention) and ``"step"``, the steps taken (int64, shape (1,)).
    Weights without state yet (no step taken) are left out."""
    state = {"step": np.asarray([step], dtype=np.int64)}
    for key, (tensor, axes, canon) in tensor_refs(model).items():
        slots = optimizer.state.get(tensor, {})
        for slot in _slots(optimizer):
            if slots.get(slot) is not None:
                state[f"{key}.{slot}"] = permute_axes(slots[slot].detach().cpu().numpy().astype(np.float32), axes, canon)
    return state


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, np.ndarray]) -> int:
    """Put ``optimizer_state``'s arrays back into ``optimizer`` (for ``model``'s weights); return the step.
    Keys that do not belong to this model and optimiser are an error naming them."""
    expected = {"step"}
    step = int(state["step"][0]) if "step" in state else 0
    for key, (tensor, axes, canon) in tensor_refs(model).items():
        for slot in _slots(optimizer):
            name = f"{key}.{slot}"
            if name in state:
                expected.add(name)
                value = torch.from_numpy(permute_axes(state[name], canon, axes)).to(tensor.device)
                optimizer.state[tensor][slot] = value.clone()
                if isinstance(optimizer, torch.optim.Adam):
                    optimizer.state[tensor]["step"] = torch.tensor(float(step))
    unexpected = sorted(set(state) - expected)
    if unexpected:
        raise ValueError(f"optimizer state has key(s) this model and optimizer do not use: {', '.join(unexpected[:5])}")
    return step
