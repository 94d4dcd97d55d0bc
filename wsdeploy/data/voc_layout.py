"""PASCAL VOC2012 with SegmentationClassAug and rasterised ScribbleSup scribbles.

```
VOC2012/                           (or a parent holding VOC2012/ or VOCdevkit/VOC2012/)
  JPEGImages/<id>.jpg
  SegmentationClass/<id>.png       palette PNGs, the palette index is the class (0 = background)
  SegmentationClassAug/<id>.png    optional: grayscale PNGs, the 10,582-image train_aug masks
  ImageSets/Segmentation/{train,val,trainval}.txt
  ImageSets/SegmentationAug/train_aug.txt   (or ImageSets/Segmentation/train_aug.txt, or
                                              VOC2012/train_aug.txt): optional train_aug list
  scribbles/<id>.png               optional, or scribble_annotation/, pascal_2012_scribble/,
                                   ScribbleSup/, or a folder given as scribble_dir: ScribbleSup
                                   scribbles rasterised to class indices, 255 = unlabelled
```

A mask is taken from SegmentationClass when that folder has one for the image, else from
SegmentationClassAug (the two agree on the images they share). Image-level tags are not stored:
they are derived from each image's mask (classes present, background 0 and 255 excluded).
"""
from __future__ import annotations

import os
from pathlib import Path

from wsdeploy.data.index import DatasetIndex, Sample, files_by_stem, format_ids, resolve_label_dir, split_ids

__all__ = ["SCRIBBLE_DIR_NAMES", "VOC_CLASSES", "find_voc_root", "index_voc"]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
SCRIBBLE_DIR_NAMES = ("scribbles", "scribble_annotation", "pascal_2012_scribble", "ScribbleSup")
_SPLIT_DIRS = ("ImageSets/Segmentation", "ImageSets/SegmentationAug", ".")


def find_voc_root(path: Path) -> Path | None:
    """The folder holding `JPEGImages/`: `path`, `path/VOC2012` or `path/VOCdevkit/VOC2012`."""
    for candidate in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    return None


def _available_splits(voc: Path) -> list[str]:
    names: set[str] = set()
    for sub in _SPLIT_DIRS:
        folder = voc / sub
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.txt"))
    return sorted(names)


def _split_file(voc: Path, split: str) -> Path:
    for sub in _SPLIT_DIRS:
        path = voc / sub / f"{split}.txt"
        if path.is_file():
            return path
    tried = ", ".join(f"{sub}/{split}.txt" for sub in _SPLIT_DIRS)
    raise ValueError(
        f"VOC split {split!r} not found in {voc} (tried {tried}); available splits: "
        f"{_available_splits(voc) or 'none'} (or pass split=None for every image)"
    )


def _scribble_folder(voc: Path, scribble_dir: str | os.PathLike | None) -> Path | None:
    if scribble_dir is not None:
        return resolve_label_dir(voc, scribble_dir, "scribble folder")
    for name in SCRIBBLE_DIR_NAMES:
        if (voc / name).is_dir():
            return voc / name
    return None


def index_voc(
    root: Path, *, split: str | None, scribble_dir: str | os.PathLike | None = None
) -> DatasetIndex:
    """Index PASCAL VOC2012 (+ SegmentationClassAug, + scribbles); see the module docstring.

    Raises:
        ValueError: no `JPEGImages/`, unknown split, a split naming a missing image, a named
            scribble folder that does not exist.
    """
    if not root.is_dir():
        raise ValueError(f"dataset folder not found: {str(root)!r}")
    voc = find_voc_root(root)
    if voc is None:
        raise ValueError(
            f"no 'JPEGImages/' folder in {str(root)!r} (nor in VOC2012/ or VOCdevkit/VOC2012/ "
            "below it): not a PASCAL VOC2012 folder"
        )
    image_dir = voc / "JPEGImages"
    images = files_by_stem(image_dir, (".jpg", ".jpeg"))
    if split is None:
        ids = sorted(images)
        if not ids:
            raise ValueError(f"no .jpg image in {image_dir}")
    else:
        split_file = _split_file(voc, split)
        ids = split_ids(split_file)
        missing = [i for i in ids if i not in images]
        if missing:
            raise ValueError(
                f"{split_file} names image(s) with no file in {image_dir}: {format_ids(missing)}"
            )

    names = ("SegmentationClass", "SegmentationClassAug")
    mask_dirs = [voc / n for n in names if (voc / n).is_dir()]
    masks: dict[str, Path] = {}
    for folder in reversed(mask_dirs):  # SegmentationClass last, so it wins
        masks.update(files_by_stem(folder, (".png",)))
    scribble_folder = _scribble_folder(voc, scribble_dir)
    scribbles = files_by_stem(scribble_folder, (".png",)) if scribble_folder else {}

    samples = tuple(
        Sample(id=i, image=images[i], mask=masks.get(i), scribble=scribbles.get(i)) for i in ids
    )
    return DatasetIndex(
        layout="voc",
        root=voc,
        split=split,
        classes=VOC_CLASSES,
        samples=samples,
        mask_dir=mask_dirs[0] if mask_dirs else None,
        scribble_dir=scribble_folder,
        tags_from_masks=True,
        background_index=0,
    )
