"""The PH2 dermoscopy set in its own folder layout.

::

    <root>/PH2 Dataset images/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp
                                     IMD002_lesion/IMD002_lesion.bmp
                                     IMD002_roi/...            (unused)

The top folder's spelling varies between copies ("PH2 Dataset images", "PH2_Dataset_images"); it is
matched leniently, and ``root`` may be that folder itself, its parent or the parent's parent. Images
and masks are paired by the ``IMDxxx`` id, never by walking order.
"""

from __future__ import annotations

import re
from pathlib import Path

from segparity.data.samples import DatasetError, Sample, Skipped, sorted_samples

ID = re.compile(r"^IMD\d+$")
TOP = re.compile(r"^ph2[ _]?dataset[ _]?images$", re.IGNORECASE)


def images_folder(root: str | Path) -> Path:
    """The folder holding the ``IMDxxx`` folders, searched at most two levels below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"PH2 folder {root} does not exist or is not a folder")
    candidates = [root] + [p for p in sorted(root.iterdir()) if p.is_dir()]
    candidates += [q for p in candidates[1:] for q in sorted(p.iterdir()) if q.is_dir()]
    for folder in candidates:
        if TOP.match(folder.name) or any(ID.match(p.name) for p in folder.iterdir() if p.is_dir()):
            return folder
    raise DatasetError(f"no 'PH2 Dataset images' folder (or IMDxxx folders) found in {root} or two levels below")


def find_ph2(root: str | Path, skip_bad: bool = False) -> tuple[list[Sample], list[str]]:
    """All PH2 pairs under ``root`` sorted by id, and the problems skipped (``skip_bad``; otherwise the
    first problem raises ``DatasetError`` naming the file)."""
    folder = images_folder(root)
    skipped = Skipped(skip_bad)
    samples = []
    for case in sorted(p for p in folder.iterdir() if p.is_dir() and ID.match(p.name)):
        image = case / f"{case.name}_Dermoscopic_Image" / f"{case.name}.bmp"
        mask = case / f"{case.name}_lesion" / f"{case.name}_lesion.bmp"
        if not image.is_file():
            skipped.report(f"PH2 case {case.name}: image {image} is missing (its mask is {mask})")
        elif not mask.is_file():
            skipped.report(f"PH2 case {case.name}: image {image} has no mask {mask}")
        else:
            samples.append(Sample(case.name, image, mask))
    return sorted_samples(samples, folder, "PH2"), skipped.problems
