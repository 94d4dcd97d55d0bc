"""Tiny generated dataset folders (folder layout and PASCAL VOC) for the data tests."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [64] * (256 * 3 - 12)


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))


def write_gray_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), label.astype(np.uint8))


def write_palette_png(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    label = np.ascontiguousarray(label, dtype=np.uint8)
    img = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
    img.putpalette(VOC_PALETTE)
    img.save(path)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def random_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """classes bg/cat/dog; images a (png), b (jpg), c (png); masks for all; scribbles a, b."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    write_lines(root / "classes.txt", ["background", "cat", "dog", ""])
    for name, (h, w) in {"a": (6, 8), "b": (10, 12), "c": (7, 5)}.items():
        suffix = ".jpg" if name == "b" else ".png"
        write_rgb(root / "images" / f"{name}{suffix}", random_image(rng, h, w))
        mask = rng.integers(0, 3, size=(h, w)).astype(np.uint8)
        mask[0, 0] = 255
        write_gray_png(root / "masks" / f"{name}.png", mask)
        if name != "c":
            scribble = np.full((h, w), 255, np.uint8)
            scribble[h // 2, 1:-1] = 1
            write_gray_png(root / "scribbles" / f"{name}.png", scribble)
    write_lines(root / "tags.txt", ["# id classes", "a cat", "b dog cat"])
    write_lines(root / "splits" / "train.txt", ["b", "a"])
    write_lines(root / "splits" / "val.txt", ["c"])
    return root


VOC_IDS = ["2007_000001", "2007_000002", "2008_000003", "2008_000004"]


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """VOC2012 under VOCdevkit/: 4 images; palette masks 1-2, Aug masks 2-4, scribbles 1, 3, 4.

    Image 1 mask: classes {0, 5, 12} + 255 border -> tags [5, 12].
    Image 2: SegmentationClass says class 15 everywhere, the Aug mask says 7 (official wins).
    Image 3: Aug mask only, classes {0, 20}. Image 4: Aug mask all background -> tags [].
    """
    rng = np.random.default_rng(1)
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    h, w = 9, 11
    for image_id in VOC_IDS:
        write_rgb(voc / "JPEGImages" / f"{image_id}.jpg", random_image(rng, h, w))
    m1 = np.zeros((h, w), np.uint8)
    m1[2:5, 2:5] = 5
    m1[6:, 6:] = 12
    m1[0, :] = 255
    write_palette_png(voc / "SegmentationClass" / "2007_000001.png", m1)
    write_palette_png(voc / "SegmentationClass" / "2007_000002.png", np.full((h, w), 15))
    write_gray_png(voc / "SegmentationClassAug" / "2007_000002.png", np.full((h, w), 7))
    m3 = np.zeros((h, w), np.uint8)
    m3[:4] = 20
    write_gray_png(voc / "SegmentationClassAug" / "2008_000003.png", m3)
    write_gray_png(voc / "SegmentationClassAug" / "2008_000004.png", np.zeros((h, w)))
    for image_id in ("2007_000001", "2008_000003", "2008_000004"):
        scribble = np.full((h, w), 255, np.uint8)
        scribble[4, 1:8] = 0
        write_gray_png(voc / "scribble_annotation" / f"{image_id}.png", scribble)
    sets = voc / "ImageSets" / "Segmentation"
    write_lines(sets / "train.txt", VOC_IDS[:1])
    write_lines(sets / "val.txt", VOC_IDS[1:2])
    write_lines(
        voc / "ImageSets" / "SegmentationAug" / "train_aug.txt",
        [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in (VOC_IDS[0], *VOC_IDS[2:])],
    )
    return tmp_path
