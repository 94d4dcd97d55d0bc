"""The wsdeploy dataset folder layout.

```
root/
  images/            <id>.jpg | .jpeg | .png | .bmp | .webp   (RGB)
  masks/             <id>.png   optional: class indices, 255 = ignore
  scribbles/         <id>.png   optional: class indices on scribbled pixels, 255 elsewhere
  tags.txt           optional: `<id> <class name> <class name> ...`, one image per line
  classes.txt        one class name per line; the class index is the line's position
  splits/<name>.txt  one image id per line (train.txt, val.txt, ...)
```

Blank lines and lines starting with '#' are skipped in every text file. An image missing from
`tags.txt` has no tags (None); list it with no class names to say it has none of the classes.
"""
from __future__ import annotations

import os
from pathlib import Path

from wsdeploy.data.index import (
    IMAGE_SUFFIXES,
    DatasetIndex,
    Sample,
    files_by_stem,
    format_ids,
    read_lines,
    resolve_label_dir,
    split_ids,
)

__all__ = ["index_folder", "read_classes", "read_tags"]


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names from `classes.txt`, one per line.

    Raises:
        ValueError: missing file, no class, a name given twice.
    """
    if not path.is_file():
        raise ValueError(f"classes file not found: {str(path)!r} (one class name per line)")
    names = [line for _, line in read_lines(path)]
    if not names:
        raise ValueError(f"{path} lists no class")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{path}: class {name!r} is listed twice")
        seen.add(name)
    return tuple(names)


def read_tags(path: Path, classes: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Image-level tags from `tags.txt`: image id -> sorted class indices.

    Raises:
        ValueError: an unknown class name (quoting the line and the known names), an image
            listed twice.
    """
    index = {name: i for i, name in enumerate(classes)}
    tags: dict[str, tuple[int, ...]] = {}
    for number, line in read_lines(path):
        image_id, *names = line.split()
        if image_id in tags:
            raise ValueError(f"{path}:{number}: image {image_id!r} is listed twice")
        unknown = [n for n in names if n not in index]
        if unknown:
            known = ", ".join(classes[:30]) + (", ..." if len(classes) > 30 else "")
            raise ValueError(
                f"{path}:{number}: unknown class name(s) {unknown} for image {image_id!r}; "
                f"classes.txt has: {known} (names are separated by whitespace)"
            )
        tags[image_id] = tuple(sorted({index[n] for n in names}))
    return tags


def _available_splits(root: Path) -> list[str]:
    folder = root / "splits"
    return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []


def index_folder(
    root: Path, *, split: str | None, scribble_dir: str | os.PathLike | None = None
) -> DatasetIndex:
    """Index a dataset in the folder layout (see the module docstring).

    `scribble_dir` replaces `scribbles/` as the folder of partial labels (relative to `root`
    or absolute), e.g. the seed PNGs of the image-level pipeline.

    Raises:
        ValueError: `images/` or `classes.txt` missing, unknown split, a split naming an image
            that is not in `images/`, malformed `tags.txt`.
    """
    if not root.is_dir():
        raise ValueError(f"dataset folder not found: {str(root)!r}")
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise ValueError(f"no 'images/' folder in {str(root)!r} (folder layout)")
    classes = read_classes(root / "classes.txt")
    images = files_by_stem(image_dir, IMAGE_SUFFIXES)
    if split is None:
        ids = sorted(images)
        if not ids:
            raise ValueError(f"no image (.jpg, .png, ...) in {image_dir}")
    else:
        split_file = root / "splits" / f"{split}.txt"
        if not split_file.is_file():
            raise ValueError(
                f"split {split!r} not found: no {split_file}; available splits: "
                f"{_available_splits(root) or 'none'} (or pass split=None for every image)"
            )
        ids = split_ids(split_file)
        missing = [i for i in ids if i not in images]
        if missing:
            raise ValueError(
                f"{split_file} names image(s) with no file in {image_dir}: {format_ids(missing)}"
            )

    mask_dir = root / "masks" if (root / "masks").is_dir() else None
    if scribble_dir is None:
        scribble_dir = root / "scribbles" if (root / "scribbles").is_dir() else None
    else:
        scribble_dir = resolve_label_dir(root, scribble_dir, "partial-label folder")
    masks = files_by_stem(mask_dir, (".png",)) if mask_dir else {}
    scribbles = files_by_stem(scribble_dir, (".png",)) if scribble_dir else {}
    tags = read_tags(root / "tags.txt", classes) if (root / "tags.txt").is_file() else {}

    samples = tuple(
        Sample(
            id=i,
            image=images[i],
            mask=masks.get(i),
            scribble=scribbles.get(i),
            tags=tags.get(i),
        )
        for i in ids
    )
    return DatasetIndex(
        layout="folder",
        root=root,
        split=split,
        classes=classes,
        samples=samples,
        mask_dir=mask_dir,
        scribble_dir=scribble_dir,
    )
