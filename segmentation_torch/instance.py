"""Instance segmentation, PyTorch side: the discriminative embedding loss.

Twin of ``segmentation_tf/instance.py``; the definition, reduction and edge cases are
``segparity.reference.instance.discriminative_loss``'s (numpy reference), which both are tested equal to.
Inputs: ``embedding (N, E, H, W)`` float, ``instances (N, H, W)`` integer ids.
"""

from __future__ import annotations

import torch
from torch import nn

from segparity.reference.instance import check_discriminative, check_embedding_target, check_instance_dtype


def _norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis, with gradient 0 (not NaN) where it is 0."""
    squared = (v * v).sum(dim=-1)
    positive = squared > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, squared, torch.ones_like(squared))),
                       torch.zeros_like(squared))


class DiscriminativeLoss(nn.Module):
    """Pull each pixel within ``delta_v`` of its instance's mean, push instance means ``2 * delta_d``
    apart, keep means small; ``alpha * L_var + beta * L_dist + gamma * L_reg`` per image, averaged over
    the images that hold an instance (``segparity.reference.instance``). ``background``: the label that is no
    instance (``None``: every label is one)."""

    def __init__(self, delta_v: float = 0.5, delta_d: float = 1.5, alpha: float = 1.0, beta: float = 1.0,
                 gamma: float = 0.001, background: int | None = 0):
        super().__init__()
        check_discriminative(delta_v, delta_d, alpha, beta, gamma)
        self.delta_v, self.delta_d = delta_v, delta_d
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.background = background

    def forward(self, embedding: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        check_embedding_target(tuple(embedding.shape), tuple(instances.shape), layout="NCHW")
        check_instance_dtype("instances", str(instances.dtype).removeprefix("torch."))
        n, e = embedding.shape[:2]
        x = embedding.permute(0, 2, 3, 1).reshape(-1, e)  # one row per pixel
        ids = instances.reshape(-1).long()
        image = torch.arange(n, device=ids.device).repeat_interleave(ids.numel() // n)
        keep = ids != self.background if self.background is not None else torch.ones_like(ids, dtype=torch.bool)
        x, ids, image = x[keep], ids[keep], image[keep]
        if ids.numel() == 0:
            return embedding.sum() * 0.0  # no instance anywhere: 0 with a zero gradient
        span = int(ids.max()) - int(ids.min()) + 1
        keys, segment = torch.unique(image * span + (ids - ids.min()), return_inverse=True)  # one per instance
        segment_image = keys // span
        s = keys.numel()
        counts = torch.zeros(s, dtype=x.dtype, device=x.device).index_add(0, segment, torch.ones_like(ids, dtype=x.dtype))
        means = torch.zeros(s, e, dtype=x.dtype, device=x.device).index_add(0, segment, x) / counts[:, None]
        pull = torch.relu(_norm(x - means[segment]) - self.delta_v) ** 2
        variance = torch.zeros(s, dtype=x.dtype, device=x.device).index_add(0, segment, pull) / counts
        same_image = (segment_image[:, None] == segment_image[None, :]) & ~torch.eye(s, dtype=torch.bool, device=x.device)
        push = torch.relu(2 * self.delta_d - _norm(means[:, None, :] - means[None, :, :])) ** 2 * same_image
        per_image = torch.zeros(n, dtype=x.dtype, device=x.device)
        instances_in = per_image.index_add(0, segment_image, torch.ones(s, dtype=x.dtype, device=x.device))
        present = instances_in > 0
        var_image = per_image.index_add(0, segment_image, variance) / instances_in.clamp_min(1)
        dist_image = per_image.index_add(0, segment_image, push.sum(dim=1)) / (instances_in * (instances_in - 1)).clamp_min(1)
        reg_image = per_image.index_add(0, segment_image, _norm(means)) / instances_in.clamp_min(1)
        loss = self.alpha * var_image + self.beta * dist_image + self.gamma * reg_image
        return loss[present].mean()
