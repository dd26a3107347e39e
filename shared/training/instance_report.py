"""The end of an instance or panoptic training run: scores on the validation set, ``panoptic.json``,
``instances.png`` and ``panoptic.png`` (next to the semantic ``predictions.png``).

Both ``segmentation_{torch,tf}/train.py`` call ``finish_instance_run`` with their own ``predict``;
everything else (clustering, metrics, files) is framework-neutral.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from segparity.atomic import atomic_write
from segparity.reference.panoptic import evaluate_panoptic
from segparity.training.plots import plot_panoptic

PANOPTIC_FILE = "panoptic.json"
MAP_TITLES = {"target": "ground truth", "embedding": "embedding + clustering", "semantic_only": "semantic only"}


def _plain(value):
    """JSON-ready: NaN -> None, dict keys -> str, numpy numbers -> float/int."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, int):
        return value
    number = float(value)
    return None if math.isnan(number) else number


def finish_instance_run(out: str | Path, data, predict, title: str, bandwidth: float, preview: int = 6) -> dict:
    """Score ``predict`` (``(B, H, W, C)`` images -> ``(classes, embedding)``, channels last) on ``data.val``
    (``segparity.training.config.TrainData``), write ``panoptic.json`` and the two pictures; return the scores
    (``segparity.reference.panoptic.evaluate_panoptic`` without its ``"maps"``)."""
    out = Path(out)
    scores = evaluate_panoptic(predict, data.val, data.things, data.stuffs, bandwidth=bandwidth)
    maps = scores.pop("maps")
    document = {"things": list(data.things), "stuffs": list(data.stuffs), "bandwidth": bandwidth,
                "images": len(data.val), **_plain(scores)}
    text = json.dumps(document, indent=1, allow_nan=False) + "\n"
    atomic_write(out / PANOPTIC_FILE, lambda tmp: Path(tmp).write_text(text))
    shown = min(preview, len(maps["target"]))
    named = {MAP_TITLES[key]: value[:shown] for key, value in maps.items()}
    images = data.val.images[:shown]
    plot_panoptic(images, named, out / "instances.png", f"{title}: instances", style="instances")
    plot_panoptic(images, named, out / "panoptic.png", f"{title}: panoptic (class colour, segment borders)")
    return scores
