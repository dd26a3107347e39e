"""segparity, PyTorch side. Models take and return ``(N, C, H, W)`` tensors (logits, no activation).

Twin of ``segmentation_tf``: the same modules, public names and arguments.
"""

from segmentation_torch.registry import build_model, list_models
from segmentation_torch.weights import from_canonical, load_weights, save_weights, to_canonical

__all__ = ["build_model", "list_models", "save_weights", "load_weights", "to_canonical", "from_canonical"]
