"""Optimisers with every hyper-parameter explicit, PyTorch side."""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adam")


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
