"""Dataset folder layouts: what a dataset contains, found on disk without decoding any pixel.

Two layouts are read (DESIGN.md, "Data formats"):

- "folder": `images/` (jpg/png), `masks/` (optional), `scribbles/` (optional), `tags.txt`
  (optional, `image_id class_a class_b ...`), `classes.txt` (one name per line, index = line
  number), `splits/{train,val,...}.txt`. See `folder_layout.py`.
- "voc": PASCAL VOC2012 (`JPEGImages/`, `SegmentationClass/`, `ImageSets/Segmentation/`), with
  SegmentationClassAug and rasterised ScribbleSup scribbles if present. See `voc_layout.py`.

`index_dataset` returns a `DatasetIndex` (`index.py`): the class names and, per image of the split, the paths
of its image and label files. Reading pixels is the dataset's job (`datasets.py`).
"""
from __future__ import annotations

import os
from pathlib import Path

from wsdeploy.data.folder_layout import index_folder
from wsdeploy.data.index import DatasetIndex
from wsdeploy.data.voc_layout import find_voc_root, index_voc

__all__ = [
    "LAYOUTS",
    "detect_layout",
    "index_dataset",
]

LAYOUTS = ("auto", "folder", "voc")


def detect_layout(root: str | os.PathLike) -> str:
    """Return "folder" or "voc" for a dataset folder.

    Raises:
        ValueError: the folder is missing or matches neither layout.
    """
    path = Path(root)
    if not path.is_dir():
        raise ValueError(f"dataset folder not found: {str(path)!r}")
    if (path / "images").is_dir():
        return "folder"
    if find_voc_root(path) is not None:
        return "voc"
    found = sorted(p.name for p in path.iterdir())[:20]
    raise ValueError(
        f"cannot tell the layout of {str(path)!r}: expected an 'images/' folder (folder layout: "
        "images/, classes.txt, splits/) or 'JPEGImages/' (PASCAL VOC2012); found "
        f"{found or 'an empty folder'}"
    )


def index_dataset(
    root: str | os.PathLike,
    *,
    split: str | None = "train",
    layout: str = "auto",
    scribble_dir: str | os.PathLike | None = None,
) -> DatasetIndex:
    """List the images of a split and their annotation files.

    Args:
        root: the dataset folder.
        split: a split name (`splits/<split>.txt`, or for VOC `ImageSets/Segmentation/<split>.txt`,
            `train_aug` too), or None for every image.
        layout: "auto" (detect), "folder" or "voc".
        scribble_dir: the folder of partial-label PNGs (scribbles, or CAM seeds written by
            `wsdeploy cam --seeds-out`): absolute, or relative to the working directory, else to
            the dataset root. Default: the
            folder layout's `scribbles/`; VOC: the first of `scribbles/`,
            `scribble_annotation/`, `pascal_2012_scribble/` that exists.

    Raises:
        ValueError: missing folders or files, unknown split or layout, malformed text files.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if split is not None and (not isinstance(split, str) or not split):
        raise ValueError(f"split must be a non-empty string or None, got {split!r}")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "folder":
        return index_folder(Path(root), split=split, scribble_dir=scribble_dir)
    return index_voc(Path(root), split=split, scribble_dir=scribble_dir)
