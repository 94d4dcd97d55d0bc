"""What a dataset contains, as plain records, and the small text helpers every layout reader
shares: `Sample` (one image and its annotation files), `DatasetIndex` (a split of a dataset),
`IMAGE_SUFFIXES` (the image files the readers, the CLI and export accept), reading `classes.txt`-
style line files and split files. The readers themselves are `folder_layout` and `voc_layout`;
`layouts.index_dataset` picks one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetIndex",
    "Sample",
    "files_by_stem",
    "format_ids",
    "read_lines",
    "resolve_label_dir",
    "split_ids",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


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


def resolve_label_dir(root: Path, folder: str | os.PathLike, what: str) -> Path:
    """Where a label folder given by the user (scribbles, CAM seeds) is.

    Absolute paths stay as they are. A relative path is looked up in the working directory
    first, as every other path on a command line (`wsdeploy cam --seeds-out runs/seeds` then
    `wsdeploy train --seeds runs/seeds`), then inside the dataset root (`scribble_dir="seeds"`).

    Raises:
        ValueError: `{what} not found`, naming every place looked in.
    """
    path = Path(folder)
    candidates = [path] if path.is_absolute() else [path, root / path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = " or ".join(repr(str(c)) for c in candidates)
    raise ValueError(f"{what} not found: {tried}")
