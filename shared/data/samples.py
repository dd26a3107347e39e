"""Image/mask pairs found on disk, and the pairs left out of a dataset (with ``skip_bad=True``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(ValueError):
    """A dataset folder or file that cannot be used; the message names the path."""


@dataclass(frozen=True)
class Sample:
    """One image and its mask: ``key`` is the dataset's own id (PH2 ``IMD002``, MADS the file name)."""

    key: str
    image: Path
    mask: Path


@dataclass
class Skipped:
    """Problems found while collecting samples; raised at once unless the caller asked to skip them."""

    skip_bad: bool = False
    problems: list[str] = field(default_factory=list)

    def report(self, message: str) -> None:
        """Raise ``DatasetError(message)``, or record it when skipping bad pairs."""
        if not self.skip_bad:
            raise DatasetError(message + " (pass skip_bad=True / --skip-bad to leave such pairs out, counted in the log)")
        self.problems.append(message)


def sorted_samples(samples: list[Sample], root: Path, dataset: str) -> list[Sample]:
    """Samples sorted by key; an empty list is an error naming ``root``."""
    if not samples:
        raise DatasetError(f"no {dataset} image/mask pairs found under {root}")
    return sorted(samples, key=lambda s: s.key)
