"""Dataset folder layouts: what a dataset contains, found on disk without decoding any pixel.

Two layouts are read (DESIGN.md, "Data formats"):

- "folder": `images/` (jpg/png), `masks/` (optional), `scribbles/` (optional), `tags.txt`
  (optional, `image_id class_a class_b ...`), `classes.txt` (one name per line, index = line
  number), `splits/{train,val,...}.txt`. See `folder_layout.py`.
- "voc": PASCAL VOC2012 (`JPEGImages/`, `SegmentationClass/`, `ImageSets/Segmentation/`), with
  SegmentationClassAug and rasterised ScribbleSup scribbles if present. See `voc_layout.py`.

`index_dataset` returns a `DatasetIndex`: the class names and, per image of the split, the paths
of its image and label files. Reading pixels is the dataset's job (`datasets.py`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "DatasetIndex",
    "Sample",
    "detect_layout",
    "index_dataset",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUTS = ("auto", "folder", "voc")


@dataclass(frozen=True)
class Sample:
    """One image of a split and its annotation files.

    Attributes:
        id: the image id (file name without suffix).
        image: path of the image file.
        mask: path of the dense label PNG (class indices, 255 = ignore), or None if absent.
        scribble: path of the scribble PNG (class indices on scribbles, 255 elsewhere), or None.
        tags: class indices from `tags.txt`, or None when the dataset has none for this image.
    """

    id: str
    image: Path
    mask: Path | None = None
    scribble: Path | None = None
    tags: tuple[int, ...] | None = None


@dataclass(frozen=True)
class DatasetIndex:
    """What `index_dataset` found.

    Attributes:
        layout: "folder" or "voc".
        root: the dataset folder actually read (for VOC, the folder holding `JPEGImages/`).
        split: the split name, or None for every image.
        classes: class names; index = class id.
        samples: one `Sample` per image of the split, in split-file order.
        mask_dir, scribble_dir: the label folders found (None if the layout has none), for error
            messages; per-image paths are in `samples`.
        tags_from_masks: tags are derived from each image's mask (VOC): the classes present,
            `background_index` and 255 excluded.
        background_index: the background class when tags come from masks, else None.
    """

    layout: str
    root: Path
    split: str | None
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    mask_dir: Path | None = None
    scribble_dir: Path | None = None
    tags_from_masks: bool = False
    background_index: int | None = None


def detect_layout(root: str | os.PathLike) -> str:
    """Return "folder" or "voc" for a dataset folder.

    Raises:
        ValueError: the folder is missing or matches neither layout.
    """
    from wsdeploy.data.voc_layout import find_voc_root

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
            `wsdeploy cam --seeds-out`), relative to the dataset root or absolute. Default: the
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
        from wsdeploy.data.folder_layout import index_folder

        return index_folder(Path(root), split=split, scribble_dir=scribble_dir)
    from wsdeploy.data.voc_layout import index_voc

    return index_voc(Path(root), split=split, scribble_dir=scribble_dir)


# Helpers shared by the two layout readers.


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) of a text file's non-empty lines; '#' comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((number, line))
    return out


def files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Map file stem -> path for the files of `folder` with one of `suffixes` (case-insensitive).

    Raises:
        ValueError: two files share a stem (e.g. `a.jpg` and `a.png`).
    """
    found: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix not in suffixes or not entry.is_file():
                continue
            stem = entry.name[: -len(suffix)]
            if stem in found:
                raise ValueError(
                    f"two files for image id {stem!r} in {folder}: {found[stem].name!r} and "
                    f"{entry.name!r}; keep one"
                )
            found[stem] = Path(entry.path)
    return found


def split_ids(path: Path) -> list[str]:
    """Image ids listed in a split file, one per line.

    A line may also be a path (`JPEGImages/2007_000032.jpg ...`, the DeepLab list format): the
    first token's file name without an image suffix is the id.

    Raises:
        ValueError: an id is listed twice, or the file lists no image.
    """
    ids: list[str] = []
    seen: dict[str, int] = {}
    for number, line in read_lines(path):
        token = line.split()[0].replace("\\", "/").rsplit("/", 1)[-1]
        stem, suffix = os.path.splitext(token)
        image_id = stem if suffix.lower() in IMAGE_SUFFIXES else token
        if image_id in seen:
            raise ValueError(
                f"{path}:{number}: image id {image_id!r} is listed twice (first on line "
                f"{seen[image_id]})"
            )
        seen[image_id] = number
        ids.append(image_id)
    if not ids:
        raise ValueError(f"split file {path} lists no image")
    return ids


def format_ids(ids: list[str]) -> str:
    """At most 5 ids, quoted, and the count: "'a', 'b', ... (7 in all)"."""
    shown = ", ".join(repr(i) for i in ids[:5])
    return f"{shown}, ... ({len(ids)} in all)" if len(ids) > 5 else shown
