"""Spatial-size rules: which input heights/widths a network takes and what size it returns.

Each spec in ``segparity.networks`` has ``output_size(size)``; ``nearest_sizes`` turns any such rule into
the "nearest valid sizes" of error messages. The U-Net rules live here:

U-Net, ``padding="same"``: every 2x2 pooling halves the size exactly, so H and W must be divisible by
``2**depth``; output size = input size.

U-Net, ``padding="valid"`` (the 2015 paper): each encoder stage applies two unpadded 3x3 convs
(size - 4), then pools (size must be even, halves it); the bottleneck removes 4; each decoder stage
doubles the size and removes 4. 572 -> 388 for depth 4.
"""

from __future__ import annotations


def unet_output_size(size: int, depth: int, padding: str, convs_per_block: int = 2) -> int | None:
    """Output height (or width) for an input of ``size``, or ``None`` if the network cannot take it.

    With ``padding="valid"`` each block's unpadded 3x3 convs remove ``2 * convs_per_block``."""
    if size < 1:
        return None
    if padding == "same":
        return size if size % 2**depth == 0 else None
    shrink = 2 * convs_per_block
    s = size
    for _ in range(depth):
        s -= shrink
        if s < 2 or s % 2:
            return None
        s //= 2
    s -= shrink
    if s < 1:
        return None
    for _ in range(depth):
        s = 2 * s - shrink
        if s < 1:
            return None
    return s


def unet_bottleneck_size(size: int, depth: int, padding: str, convs_per_block: int = 2) -> int | None:
    """Height (or width) of the bottleneck's output for a valid input ``size``, else ``None``."""
    if unet_output_size(size, depth, padding, convs_per_block) is None:
        return None
    if padding == "same":
        return size // 2**depth
    s = size
    for _ in range(depth):
        s = (s - 2 * convs_per_block) // 2
    return s - 2 * convs_per_block


def nearest_sizes(size: int, output_size, count: int = 2) -> list[int]:
    """The sizes closest to ``size`` for which ``output_size(candidate)`` is not ``None`` (at most
    ``count``, smaller one first on ties), for any network's size rule."""
    found: list[int] = []
    for delta in range(0, 4096):
        for candidate in (size - delta, size + delta) if delta else (size,):
            if candidate >= 1 and candidate not in found and output_size(candidate) is not None:
                found.append(candidate)
        if len(found) >= count:
            break
    return sorted(found[:count])


def nearest_valid_sizes(size: int, depth: int, padding: str, count: int = 2) -> list[int]:
    """The U-Net input sizes closest to ``size`` (at most ``count``, smaller one first on ties)."""
    return nearest_sizes(size, lambda s: unet_output_size(s, depth, padding), count)


def smallest_valid_size(depth: int, padding: str) -> int:
    """The smallest input size the network takes."""
    return nearest_valid_sizes(1, depth, padding, count=1)[0]


def center_crop_labels(labels, height: int, width: int):
    """Crop the centre ``height x width`` of label maps ``(N, H, W)``, as the networks crop skips
    (the extra row/column, if odd, is cut at the bottom/right). With ``padding="valid"`` the output
    covers the centre of the input tile, so targets are cropped with this."""
    top = (labels.shape[-2] - height) // 2
    left = (labels.shape[-1] - width) // 2
    return labels[..., top:top + height, left:left + width]
