"""The Kaggle "Segmentation Full Body MADS Dataset" layout.

::

    <root>/segmentation_full_body_mads_dataset_1192_img/images/<name>.png
                                                        masks/<name>.png
                                                        df.csv   (columns images, masks; not needed)

The dataset folder is sometimes nested twice; ``root`` may be any folder at most three levels above
the one holding ``images/`` and ``masks/``. Images and masks are paired by identical file name (the
extension may differ).
"""

from __future__ import annotations

from pathlib import Path

from segparity.data.samples import DatasetError, Sample, Skipped, sorted_samples

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def pair_folder(root: str | Path, depth: int = 3) -> Path:
    """The folder holding both ``images/`` and ``masks/``, breadth-first at most ``depth`` levels down."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"MADS folder {root} does not exist or is not a folder")
    level = [root]
    for _ in range(depth + 1):
        for folder in level:
            if (folder / "images").is_dir() and (folder / "masks").is_dir():
                return folder
        level = [q for p in level for q in sorted(p.iterdir()) if q.is_dir()]
    raise DatasetError(f"no folder with both images/ and masks/ found in {root} or {depth} levels below")


def _by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def find_mads(root: str | Path, skip_bad: bool = False) -> tuple[list[Sample], list[str]]:
    """All MADS pairs under ``root`` sorted by name, and the problems skipped (``skip_bad``; otherwise
    the first image without mask, or mask without image, raises ``DatasetError`` naming the file)."""
    folder = pair_folder(root)
    images, masks = _by_stem(folder / "images"), _by_stem(folder / "masks")
    skipped = Skipped(skip_bad)
    for name in sorted(set(images) - set(masks)):
        skipped.report(f"MADS image {images[name]} has no mask in {folder / 'masks'}")
    for name in sorted(set(masks) - set(images)):
        skipped.report(f"MADS mask {masks[name]} has no image in {folder / 'images'}")
    samples = [Sample(name, images[name], masks[name]) for name in sorted(set(images) & set(masks))]
    return sorted_samples(samples, folder, "MADS"), skipped.problems
