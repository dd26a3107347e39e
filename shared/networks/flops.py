"""Floating-point operations of a network, counted from its spec (no framework needed).

The convention is ``torch.utils.flop_counter``'s, so the two counts can be checked against each other
(``tests/test_flops.py``): only convolutions and transposed convolutions count, a multiply-add is 2
FLOPs, and BatchNorm, ReLU, pooling, resizing, additions and the loss are left out (on these networks
they are a few percent of the work and are memory-bound, not arithmetic-bound).

- A conv with ``C_in -> C_out``, kernel ``k`` and output ``H' x W'`` does ``N H' W' C_out C_in k^2``
  multiply-adds (a depthwise conv ``N H' W' C_out k^2``: one input channel per filter); a transposed conv the same over its *input* ``H x W`` (every input pixel meets the
  whole kernel).
- A training step is the forward, then for every conv layer the gradient of its weight (as many
  multiply-adds as its forward) and the gradient of its input (as many again), except the first
  layer, whose input is the image and needs no gradient. Optimiser updates are elementwise: not counted.
"""

from __future__ import annotations

TASKS = ("forward", "train_step")


def layer_macs(spec, height: int, width: int) -> dict[str, int]:
    """Conv layer path -> multiply-adds of its forward for one ``height x width`` image, in layer-table order; a layer
    a network calls more than once counts each call (``spec.call_counts()``, where a spec has one: the lesson U-Net's
    recomputed skips)."""
    for name, side in (("height", height), ("width", width)):
        if spec.output_size(side) is None:
            raise ValueError(f"{name} {side} cannot go through {spec.describe()}: it needs {spec.size_rule()}")
    rows, cols = spec.layer_sizes(height), spec.layer_sizes(width)
    calls = spec.call_counts() if hasattr(spec, "call_counts") else {}
    macs = {}
    for entry in spec.layer_table():
        if entry.kind in ("conv2d", "conv_transpose2d", "depthwise_conv2d"):
            fan_in = 1 if entry.kind == "depthwise_conv2d" else entry.in_channels  # one input channel per filter
            per_pixel = fan_in * entry.out_channels * entry.kernel_size ** 2
            macs[entry.path] = rows[entry.path] * cols[entry.path] * per_pixel * calls.get(entry.path, 1)
    return macs


def step_flops(spec, batch: int, height: int, width: int, task: str) -> int:
    """FLOPs of one ``task`` ("forward" or "train_step") on a ``(batch, in_channels, height, width)`` input."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    macs = list(layer_macs(spec, height, width).values())
    forward = sum(macs)
    if task == "forward":
        return 2 * batch * forward
    backward = forward + (forward - macs[0])  # weight gradients, then input gradients but the image's
    return 2 * batch * (forward + backward)
