"""Tests for SegmentationDataset on the folder layout and PASCAL VOC (+Aug, +scribbles)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from wsdeploy.training.collate import collate_segmentation, network_input, tags_to_multihot
from wsdeploy.data.datasets import SegmentationDataset, tags_from_mask
from wsdeploy.data.layouts import detect_layout, index_dataset
from wsdeploy.data.voc_layout import VOC_CLASSES

from tests.wsdeploy.data.conftest import VOC_IDS, write_gray_png, write_lines, write_rgb

# ---------------------------------------------------------------- folder layout


def test_folder_items(folder_root: Path):
    ds = SegmentationDataset(folder_root, split="train")
    assert ds.classes == ["background", "cat", "dog"]
    assert ds.ids == ["b", "a"]  # split-file order
    assert len(ds) == 2
    item = ds[1]
    assert set(item) == {"image", "label", "tags", "id"}
    assert item["id"] == "a"
    assert item["image"].shape == (6, 8, 3) and item["image"].dtype == np.uint8
    expected = cv2.imread(str(folder_root / "images" / "a.png"))[:, :, ::-1]
    np.testing.assert_array_equal(item["image"], expected)  # RGB, lossless PNG
    assert item["label"].shape == (6, 8) and item["label"].dtype == np.uint8
    expected_mask = cv2.imread(str(folder_root / "masks" / "a.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(item["label"], expected_mask)
    assert item["tags"] == [1]
    assert ds[0]["tags"] == [1, 2]  # "b dog cat" -> sorted indices
    assert ds[0]["image"].shape == (10, 12, 3)  # the jpg


def test_folder_scribbles_no_labels_and_all_split(folder_root: Path):
    ds = SegmentationDataset(folder_root, split="train", labels="scribbles")
    label = ds[0]["label"]
    assert set(np.unique(label).tolist()) == {1, 255}
    ds = SegmentationDataset(folder_root, split="val", labels=None)
    item = ds[0]
    assert item["label"] is None and item["tags"] is None  # c is not in tags.txt
    ds = SegmentationDataset(folder_root, split=None)
    assert ds.ids == ["a", "b", "c"]
    assert "layout='folder'" in repr(ds)


def test_folder_transform_is_applied(folder_root: Path):
    def transform(item):
        return {**item, "label": item["label"] + 0, "flag": True}

    assert SegmentationDataset(folder_root, transform=transform)[0]["flag"] is True
    with pytest.raises(TypeError, match="callable"):
        SegmentationDataset(folder_root, transform="flip")


def test_folder_errors(folder_root: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="not found"):
        SegmentationDataset(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"available splits: \['train', 'val'\]"):
        SegmentationDataset(folder_root, split="test")
    with pytest.raises(ValueError, match="labels must be one of"):
        SegmentationDataset(folder_root, labels="mask")
    with pytest.raises(ValueError, match=r"no label file .*'c'"):
        SegmentationDataset(folder_root, split="val", labels="scribbles")
    with pytest.raises(ValueError, match="layout must be one of"):
        SegmentationDataset(folder_root, layout="coco")
    with pytest.raises(ValueError, match="JPEGImages"):
        SegmentationDataset(folder_root, layout="voc")
    with pytest.raises(ValueError, match="cannot tell the layout"):
        SegmentationDataset(tmp_path)


def test_folder_split_names_missing_image(folder_root: Path):
    write_lines(folder_root / "splits" / "train.txt", ["a", "zzz"])
    with pytest.raises(ValueError, match=r"train.txt names image\(s\) with no file .*'zzz'"):
        SegmentationDataset(folder_root)


def test_folder_masks_requested_but_absent(folder_root: Path):
    for p in (folder_root / "masks").iterdir():
        p.unlink()
    (folder_root / "masks").rmdir()
    with pytest.raises(ValueError, match="has no masks: expected a 'masks/' folder"):
        SegmentationDataset(folder_root)
    assert SegmentationDataset(folder_root, labels=None)[0]["label"] is None


def test_folder_mask_size_mismatch(folder_root: Path):
    write_gray_png(folder_root / "masks" / "a.png", np.zeros((3, 3)))
    ds = SegmentationDataset(folder_root)
    with pytest.raises(ValueError, match=r"is 3x3 \(WxH\) but its image is 8x6"):
        ds[1]


def test_folder_label_value_out_of_range(folder_root: Path):
    write_gray_png(folder_root / "masks" / "a.png", np.full((6, 8), 7))
    with pytest.raises(ValueError, match=r"holds values \[7\]; expected class indices 0..2"):
        SegmentationDataset(folder_root)[1]


def test_folder_unknown_class_in_tags(folder_root: Path):
    write_lines(folder_root / "tags.txt", ["a cat", "b horse"])
    with pytest.raises(ValueError, match=r"tags.txt:2: unknown class name\(s\) \['horse'\]"):
        SegmentationDataset(folder_root)


def test_folder_text_file_errors(folder_root: Path):
    write_lines(folder_root / "splits" / "train.txt", ["a", "a"])
    with pytest.raises(ValueError, match="listed twice"):
        SegmentationDataset(folder_root)
    write_lines(folder_root / "splits" / "train.txt", ["a"])
    write_lines(folder_root / "classes.txt", ["bg", "cat", "bg"])
    with pytest.raises(ValueError, match="class 'bg' is listed twice"):
        SegmentationDataset(folder_root)
    (folder_root / "classes.txt").unlink()
    with pytest.raises(ValueError, match="classes file not found"):
        SegmentationDataset(folder_root)


def test_folder_two_files_for_one_id(folder_root: Path):
    write_rgb(folder_root / "images" / "a.jpg", np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="two files for image id 'a'"):
        SegmentationDataset(folder_root)


def test_folder_scribble_dir_replaces_scribbles(folder_root: Path):
    with pytest.raises(ValueError, match="partial-label folder not found"):
        SegmentationDataset(folder_root, scribble_dir="x")
    seeds = np.full((6, 8), 255, np.uint8)
    seeds[2, 3] = 2
    write_gray_png(folder_root / "seeds" / "a.png", seeds)
    ds = SegmentationDataset(folder_root, split=None, labels=None, scribble_dir="seeds")
    assert ds.index.scribble_dir == folder_root / "seeds"
    with pytest.raises(ValueError, match="have no label file"):  # b and c have no seeds
        SegmentationDataset(folder_root, split="train", labels="scribbles", scribble_dir="seeds")
    write_gray_png(folder_root / "seeds" / "b.png", np.full((10, 12), 255, np.uint8))
    absolute = SegmentationDataset(
        folder_root, split="train", labels="scribbles", scribble_dir=folder_root / "seeds"
    )
    item = absolute[absolute.ids.index("a")]
    np.testing.assert_array_equal(item["label"], seeds)


# ---------------------------------------------------------------- VOC


def test_voc_detection_and_splits(voc_root: Path):
    assert detect_layout(voc_root / "VOCdevkit" / "VOC2012") == "voc"
    for root in (voc_root, voc_root / "VOCdevkit", voc_root / "VOCdevkit" / "VOC2012"):
        ds = SegmentationDataset(root, split="train")
        assert ds.ids == VOC_IDS[:1]
    assert ds.classes == list(VOC_CLASSES) and len(ds.classes) == 21
    assert SegmentationDataset(voc_root, split="val").ids == VOC_IDS[1:2]
    aug = SegmentationDataset(voc_root, split="train_aug", layout="voc")  # DeepLab list format
    assert aug.ids == [VOC_IDS[0], *VOC_IDS[2:]]
    assert SegmentationDataset(voc_root, split=None).ids == VOC_IDS
    with pytest.raises(ValueError, match=r"available splits: \['train', 'train_aug', 'val'\]"):
        SegmentationDataset(voc_root, split="test")


def test_voc_palette_masks_and_derived_tags(voc_root: Path):
    item = SegmentationDataset(voc_root, split="train")[0]
    assert item["image"].shape == (9, 11, 3)
    assert set(np.unique(item["label"]).tolist()) == {0, 5, 12, 255}  # palette indices, not colours
    assert item["tags"] == [5, 12]  # background and 255 excluded


def test_voc_official_mask_wins_over_aug(voc_root: Path):
    item = SegmentationDataset(voc_root, split="val")[0]
    assert np.all(item["label"] == 15)
    assert item["tags"] == [15]


def test_voc_aug_masks_and_scribbles(voc_root: Path):
    ds = SegmentationDataset(voc_root, split="train_aug")
    assert [ds[i]["tags"] for i in range(3)] == [[5, 12], [20], []]
    scribbled = SegmentationDataset(voc_root, split="train_aug", labels="scribbles")
    item = scribbled[1]
    assert set(np.unique(item["label"]).tolist()) == {0, 255}
    assert item["tags"] == [20]  # tags still come from the full mask
    none = SegmentationDataset(voc_root, split="train_aug", labels=None)[1]
    assert none["label"] is None and none["tags"] == [20]


def test_voc_scribble_errors_and_custom_folder(voc_root: Path):
    with pytest.raises(ValueError, match=r"no label file .*'2007_000002'"):
        SegmentationDataset(voc_root, split="val", labels="scribbles")
    voc = voc_root / "VOCdevkit" / "VOC2012"
    (voc / "scribble_annotation").rename(voc / "my_scribbles")
    with pytest.raises(ValueError, match="pass scribble_dir="):
        SegmentationDataset(voc_root, split="train", labels="scribbles")
    ds = SegmentationDataset(
        voc_root, split="train", labels="scribbles", scribble_dir="my_scribbles"
    )
    assert ds[0]["label"].shape == (9, 11)
    ds = SegmentationDataset(voc_root, labels="scribbles", scribble_dir=voc / "my_scribbles")
    assert len(ds) == 1
    with pytest.raises(ValueError, match="scribble folder not found"):
        SegmentationDataset(voc_root, labels="scribbles", scribble_dir="nope")


def test_voc_split_names_missing_image(voc_root: Path):
    voc = voc_root / "VOCdevkit" / "VOC2012"
    write_lines(voc / "ImageSets" / "Segmentation" / "train.txt", ["2007_000001", "2099_000009"])
    with pytest.raises(ValueError, match="'2099_000009'"):
        SegmentationDataset(voc_root)


def test_voc_without_masks(voc_root: Path):
    voc = voc_root / "VOCdevkit" / "VOC2012"
    for name in ("SegmentationClass", "SegmentationClassAug"):
        for p in (voc / name).iterdir():
            p.unlink()
        (voc / name).rmdir()
    with pytest.raises(ValueError, match="SegmentationClassAug"):
        SegmentationDataset(voc_root)
    item = SegmentationDataset(voc_root, labels=None)[0]
    assert item["label"] is None and item["tags"] is None


def test_index_dataset_paths(voc_root: Path):
    idx = index_dataset(voc_root, split="val")
    (sample,) = idx.samples
    assert sample.mask.parent.name == "SegmentationClass"
    assert sample.scribble is None
    assert idx.tags_from_masks and idx.background_index == 0


def test_tags_from_mask():
    mask = np.array([[0, 3, 255], [254, 3, 1]], np.uint8)
    assert tags_from_mask(mask, num_classes=4) == [1, 3]
    assert tags_from_mask(mask, num_classes=4, background_index=None) == [0, 1, 3]


# ---------------------------------------------------------------- collate


def test_collate_with_dataloader(voc_root: Path):
    ds = SegmentationDataset(voc_root, split="train_aug")
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_segmentation)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, 9, 11) and batch["image"].dtype == torch.uint8
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    first = torch.from_numpy(ds[0]["image"]).permute(2, 0, 1)
    assert torch.equal(batch["image"][0], first)
    x = network_input(batch["image"], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # normalised where it is
    assert x.dtype == torch.float32
    torch.testing.assert_close(x[0], (first.float() / 255 - 0.5) / 0.25)
    assert batch["label"].shape == (3, 9, 11) and batch["label"].dtype == torch.int64
    assert batch["id"] == ds.ids
    assert batch["tags"] == [[5, 12], [20], []]
    multihot = tags_to_multihot(batch["tags"], 21)
    assert multihot.shape == (3, 21) and multihot[0, [5, 12]].tolist() == [1.0, 1.0]
    assert multihot.sum().item() == 3


def test_collate_errors():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="empty batch"):
        collate_segmentation([])
    with pytest.raises(ValueError, match="share one size"):
        collate_segmentation([{"image": img}, {"image": np.zeros((5, 4, 3), np.uint8)}])
    with pytest.raises(ValueError, match="some items have a label"):
        label = np.zeros((4, 4), np.uint8)
        collate_segmentation([{"image": img, "label": None}, {"image": img, "label": label}])
    with pytest.raises(TypeError, match="numpy uint8"):
        collate_segmentation([{"image": torch.zeros(4, 4, 3)}])
    assert collate_segmentation([{"image": img, "label": None}])["label"] is None
    with pytest.raises(ValueError, match="no tags"):
        tags_to_multihot([[1], None], 3)
    with pytest.raises(ValueError, match="outside"):
        tags_to_multihot([[3]], 3)
