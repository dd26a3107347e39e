"""Train/validation/test splits by seed, stored as a JSON list of keys so a run can be repeated exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from segparity.atomic import atomic_write
from segparity.data.samples import DatasetError

PARTS = ("train", "val", "test")


def split_keys(keys: list[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
               seed: int = 42) -> dict[str, list[str]]:
    """Shuffle ``keys`` with ``seed`` and cut them by ``fractions`` (train, val, test; they must sum to 1).

    Counts are ``round(fraction * n)`` for val and test, the rest train; each part keeps the keys sorted.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise DatasetError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    if len(set(keys)) != len(keys):
        raise DatasetError("split keys must be unique")
    order = np.random.default_rng(seed).permutation(len(keys))
    n_val, n_test = round(fractions[1] * len(keys)), round(fractions[2] * len(keys))
    shuffled = [keys[i] for i in order]
    parts = {"val": shuffled[:n_val], "test": shuffled[n_val:n_val + n_test], "train": shuffled[n_val + n_test:]}
    return {part: sorted(parts[part]) for part in PARTS}


def save_split(split: dict[str, list[str]], path: str | os.PathLike) -> Path:
    """Write ``{"train": [...], "val": [...], "test": [...]}`` atomically."""
    text = json.dumps({part: split[part] for part in PARTS}, indent=1) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def load_split(path: str | os.PathLike, keys: list[str]) -> dict[str, list[str]]:
    """Read a stored split and check it against the dataset's ``keys`` (unknown keys name the file)."""
    try:
        split = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot read split file {path}: {error}") from error
    if not isinstance(split, dict) or set(split) != set(PARTS):
        raise DatasetError(f"split file {path} must hold exactly the lists {', '.join(PARTS)}")
    unknown = sorted(set().union(*map(set, split.values())) - set(keys))
    if unknown:
        raise DatasetError(f"split file {path} names {len(unknown)} key(s) not in the dataset, e.g. {unknown[0]!r}")
    return split
