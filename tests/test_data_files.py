"""PH2 and MADS on disk: small fake trees in exactly the datasets' layouts, built here (nothing is
downloaded); pairing by id or name, and every bad-input case named."""

from pathlib import Path

import numpy as np
import pytest
from skimage import io

from segparity.data.images import read_image, read_mask
from segparity.data.mads import find_mads
from segparity.data.ph2 import find_ph2
from segparity.data.samples import DatasetError


def _image(rng, h=12, w=16) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _mask(rng, h=12, w=16) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[2:8, 3:10] = 255
    return mask


def make_ph2(root: Path, ids=("IMD002", "IMD003", "IMD010"), top="PH2 Dataset images") -> Path:
    """``root/PH2Dataset/<top>/IMDxxx/...`` as the dataset ships (with the unused ROI folder)."""
    rng = np.random.default_rng(0)
    for case in ids:
        folder = root / "PH2Dataset" / top / case
        for sub in (f"{case}_Dermoscopic_Image", f"{case}_lesion", f"{case}_roi"):
            (folder / sub).mkdir(parents=True)
        io.imsave(folder / f"{case}_Dermoscopic_Image" / f"{case}.bmp", _image(rng), check_contrast=False)
        io.imsave(folder / f"{case}_lesion" / f"{case}_lesion.bmp", _mask(rng), check_contrast=False)
    return root


def make_mads(root: Path, names=("a_001", "a_002", "b_001"), nested=True) -> Path:
    """``root/segmentation_full_body_mads_dataset_1192_img/[same again/]images|masks/<name>.png``."""
    rng = np.random.default_rng(1)
    folder = root / "segmentation_full_body_mads_dataset_1192_img"
    if nested:
        folder = folder / "segmentation_full_body_mads_dataset_1192_img"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for name in names:
        io.imsave(folder / "images" / f"{name}.png", _image(rng), check_contrast=False)
        io.imsave(folder / "masks" / f"{name}.png", _mask(rng), check_contrast=False)
    (folder / "df.csv").write_text("images,masks\n" + "".join(f"images/{n}.png,masks/{n}.png\n" for n in names))
    return root


@pytest.mark.parametrize("top", ["PH2 Dataset images", "PH2_Dataset_images"])
def test_ph2_pairs_by_id_in_both_spellings(tmp_path, top):
    samples, skipped = find_ph2(make_ph2(tmp_path, top=top))
    assert [s.key for s in samples] == ["IMD002", "IMD003", "IMD010"] and skipped == []
    assert samples[0].image.name == "IMD002.bmp" and samples[0].mask.name == "IMD002_lesion.bmp"
    for start in (tmp_path, tmp_path / "PH2Dataset", tmp_path / "PH2Dataset" / top):
        assert find_ph2(start)[0] == samples
    image, mask = read_image(samples[0].image), read_mask(samples[0].mask)
    assert image.shape == (12, 16, 3) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1} and mask.sum() == 6 * 7


def test_mads_pairs_by_name_nested_twice(tmp_path):
    samples, skipped = find_mads(make_mads(tmp_path))
    assert [s.key for s in samples] == ["a_001", "a_002", "b_001"] and skipped == []
    assert all(s.image.parent.name == "images" and s.mask.parent.name == "masks" for s in samples)
    assert find_mads(make_mads(tmp_path / "flat", nested=False))[0][0].key == "a_001"


def test_ph2_image_without_mask_is_named_or_skipped(tmp_path):
    make_ph2(tmp_path)
    missing = next(tmp_path.rglob("IMD003_lesion.bmp"))
    missing.unlink()
    with pytest.raises(DatasetError, match=r"PH2 case IMD003: image .*IMD003.bmp has no mask .*IMD003_lesion.bmp"):
        find_ph2(tmp_path)
    samples, skipped = find_ph2(tmp_path, skip_bad=True)
    assert [s.key for s in samples] == ["IMD002", "IMD010"] and len(skipped) == 1 and "IMD003" in skipped[0]


def test_mads_mask_without_image_and_image_without_mask(tmp_path):
    make_mads(tmp_path, nested=False)
    folder = tmp_path / "segmentation_full_body_mads_dataset_1192_img"
    (folder / "images" / "a_002.png").unlink()
    (folder / "masks" / "b_001.png").unlink()
    with pytest.raises(DatasetError, match=r"MADS image .*b_001.png has no mask"):
        find_mads(tmp_path)
    samples, skipped = find_mads(tmp_path, skip_bad=True)
    assert [s.key for s in samples] == ["a_001"]
    assert len(skipped) == 2 and any("a_002.png has no image" in p for p in skipped)


def test_empty_and_wrong_folders_are_named(tmp_path):
    with pytest.raises(DatasetError, match=r"PH2 folder .*nowhere does not exist"):
        find_ph2(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"MADS folder .*nowhere does not exist"):
        find_mads(tmp_path / "nowhere")
    (tmp_path / "empty" / "PH2 Dataset images").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no PH2 image/mask pairs found under .*PH2 Dataset images"):
        find_ph2(tmp_path / "empty")
    with pytest.raises(DatasetError, match=r"no folder with both images/ and masks/ found in"):
        find_mads(tmp_path / "empty")


def test_corrupt_image_and_odd_masks_are_named(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetError, match=r"cannot read .*broken.png as an image"):
        read_image(broken)
    grey = tmp_path / "grey.png"
    io.imsave(grey, np.array([[0, 128], [255, 7]], np.uint8), check_contrast=False)
    with pytest.raises(DatasetError, match=r"mask .*grey.png holds values 0, 7, 128, 255; expected a binary mask"):
        read_mask(grey)
    assert read_mask(grey, threshold=127).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(DatasetError, match=r"file .*absent.png does not exist"):
        read_mask(tmp_path / "absent.png")
