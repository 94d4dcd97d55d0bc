"""CamVid through the folder-layout reader: the shared benchmark copy (when present beside the
checkout) and the four frames the package ships."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.runtime import DEFAULT_MODEL_PATH

CAMVID = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "camvid"
SAMPLES = DEFAULT_MODEL_PATH.parent / "camvid_samples"
CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
           "pedestrian", "bicyclist"]

needs_camvid = pytest.mark.skipif(
    not (CAMVID / "images").is_dir(), reason=f"CamVid not found at {CAMVID} (../shared/data/camvid beside the checkout)"
)


@needs_camvid
@pytest.mark.parametrize(("split", "count"), [("train", 367), ("val", 101)])
def test_shared_camvid_loads_through_the_folder_layout(split, count):
    masks = SegmentationDataset(CAMVID, split=split, labels="masks")
    scribbles = SegmentationDataset(CAMVID, split=split, labels="scribbles")
    assert masks.index.layout == "folder" and masks.classes == CLASSES and len(masks) == count
    assert masks.ids == scribbles.ids
    item, strokes = masks[0], scribbles[0]
    assert item["image"].shape == (360, 480, 3) and item["image"].dtype == np.uint8
    assert item["label"].shape == (360, 480) and strokes["label"].shape == (360, 480)
    assert set(np.unique(item["label"])) <= set(range(11)) | {255}
    labelled = strokes["label"] != 255
    assert 0.01 < labelled.mean() < 0.15  # thin strokes (~5.6% of pixels over the set)
    # the scribbles are made from the masks: no stroke pixel disagrees with its mask
    np.testing.assert_array_equal(strokes["label"][labelled], item["label"][labelled])


@needs_camvid
def test_camvid_tags_name_the_classes_of_each_mask():
    data = SegmentationDataset(CAMVID, split="val", labels="masks")
    item = data[0]
    present = sorted(int(c) for c in np.unique(item["label"]) if c != 255)
    assert list(item["tags"]) == present


def test_shipped_camvid_samples_load_with_masks_and_scribbles():
    masks = SegmentationDataset(SAMPLES, split="val", labels="masks")
    scribbles = SegmentationDataset(SAMPLES, split="val", labels="scribbles")
    assert masks.classes == CLASSES and len(masks) == 4 and masks.ids == scribbles.ids
    for i in range(len(masks)):
        assert masks[i]["image"].shape == (360, 480, 3) and masks[i]["label"].shape == (360, 480)
    readme = (SAMPLES / "README.md").read_text()
    assert "non-commercial" in readme and "Brostow" in readme and "ECCV 2008" in readme
