"""Splits by seed, stored and reloaded."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segparity.data.samples import DatasetError
from segparity.data.splits import load_split, save_split, split_keys


@given(st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_split_partitions_the_keys_reproducibly(n, seed):
    keys = [f"IMD{i:03d}" for i in range(n)]
    split = split_keys(keys, (0.8, 0.1, 0.1), seed)
    assert sorted(sum(split.values(), [])) == keys
    assert len(split["val"]) == round(0.1 * n) and len(split["test"]) == round(0.1 * n)
    assert split == split_keys(list(reversed(keys))[::-1], (0.8, 0.1, 0.1), seed)


def test_split_round_trip_and_bad_files(tmp_path):
    keys = [f"k{i}" for i in range(20)]
    split = split_keys(keys, (0.9, 0.1, 0.0), seed=42)
    path = save_split(split, tmp_path / "split.json")
    assert load_split(path, keys) == split
    with pytest.raises(DatasetError, match=r"names 1 key\(s\) not in the dataset, e.g. 'k19'"):
        load_split(path, keys[:-1])  # every key is in some part, k19 included
    (tmp_path / "bad.json").write_text(json.dumps({"train": []}))
    with pytest.raises(DatasetError, match="must hold exactly the lists train, val, test"):
        load_split(tmp_path / "bad.json", keys)
    with pytest.raises(DatasetError, match="summing to 1"):
        split_keys(keys, (0.5, 0.1, 0.1))
