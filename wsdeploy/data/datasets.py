"""`SegmentationDataset`: images with dense masks, scribbles or image-level tags (a torch Dataset).

Reads the folder layout and PASCAL VOC2012 (+ SegmentationClassAug, + ScribbleSup scribbles);
see `layouts.py`. Every image and label file goes through `wsdeploy.data.image_io`.

An item is a dict:
    image: (H, W, 3) uint8 RGB numpy array
    label: (H, W) uint8 numpy array of class indices, 255 = ignore / unlabelled; None if
           `labels=None`
    tags:  list[int], the image-level class indices (VOC: derived from the mask, background and
           255 excluded), or None if the dataset has none for this image
    id:    str, the image id
plus whatever the transform adds or changes (e.g. `orig_size` from `val_transform`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from wsdeploy.data.image_io import read_image, read_label_png
from wsdeploy.data.index import DatasetIndex, Sample, format_ids
from wsdeploy.data.layouts import index_dataset
from wsdeploy.data.labels import IGNORE_LABEL

__all__ = ["LABEL_KINDS", "SegmentationDataset", "tags_from_mask"]

logger = logging.getLogger(__name__)

LABEL_KINDS = ("masks", "scribbles", None)


class SegmentationDataset(Dataset):
    """Images and their labels from a dataset folder.

    Args:
        root: the dataset folder (folder layout or PASCAL VOC2012).
        split: split name ("train", "val", VOC's "train_aug", ...) or None for every image.
        labels: which label map to return as `label`: "masks" (dense), "scribbles", or None.
        transform: optional callable item dict -> item dict, applied last (e.g.
            `wsdeploy.training.transforms.train_transform(...)`).
        layout: "auto" (detect), "folder" or "voc".
        scribble_dir: the folder read as `labels="scribbles"`, e.g. CAM seeds: absolute, or
            relative to the working directory, else to the dataset root; default: the folder layout's scribbles/, for VOC the
            first of scribbles/, scribble_annotation/, pascal_2012_scribble/, ScribbleSup/.

    Attributes:
        classes: list[str], class names (index = class id).
        ids: list[str], the image ids of the split, in order.
        index: the `DatasetIndex` (paths per image).

    Raises:
        ValueError: missing folder, unknown split or layout, a split naming a missing image,
            `labels` requested but absent (the folder, or the file of some image), an unknown
            class name in tags.txt. A label whose size differs from its image, or that holds
            values other than class indices and 255, raises when the item is read.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        split: str | None = "train",
        labels: str | None = "masks",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        layout: str = "auto",
        scribble_dir: str | os.PathLike | None = None,
    ) -> None:
        if labels not in LABEL_KINDS:
            raise ValueError(f"labels must be one of {LABEL_KINDS}, got {labels!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.index: DatasetIndex = index_dataset(
            root, split=split, layout=layout, scribble_dir=scribble_dir
        )
        self.labels = labels
        self.transform = transform
        self.classes: list[str] = list(self.index.classes)
        self.ids: list[str] = [s.id for s in self.index.samples]
        if labels is not None:
            self._check_labels_present(labels)

    def _check_labels_present(self, labels: str) -> None:
        idx = self.index
        folder = idx.mask_dir if labels == "masks" else idx.scribble_dir
        if folder is None:
            expected = {
                ("folder", "masks"): "a 'masks/' folder",
                ("folder", "scribbles"): "a 'scribbles/' folder",
                ("voc", "masks"): "'SegmentationClass/' or 'SegmentationClassAug/'",
                ("voc", "scribbles"): "a scribble folder (pass scribble_dir=)",
            }[(idx.layout, labels)]
            raise ValueError(
                f"labels={labels!r} requested but {str(idx.root)!r} has no {labels}: expected "
                f"{expected}; pass labels=None for images only"
            )
        missing = [s.id for s in idx.samples if _label_path(s, labels) is None]
        if missing:
            raise ValueError(
                f"labels={labels!r}: {len(missing)} image(s) of split {idx.split!r} have no "
                f"label file in {folder}: {format_ids(missing)}"
            )

    def __len__(self) -> int:
        return len(self.index.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.index.samples[i]
        image = read_image(sample.image)
        label = None
        if self.labels is not None:
            label = self._read_label(_label_path(sample, self.labels), image.shape[:2])
        tags = self._tags(sample, label if self.labels == "masks" else None, image.shape[:2])
        item: dict[str, Any] = {"image": image, "label": label, "tags": tags, "id": sample.id}
        if self.transform is not None:
            item = self.transform(item)
        return item

    def _read_label(self, path: Any, size: tuple[int, int]) -> np.ndarray:
        label = read_label_png(path)
        if label.shape != size:
            raise ValueError(
                f"label {path} is {label.shape[1]}x{label.shape[0]} (WxH) but its image is "
                f"{size[1]}x{size[0]}; labels must have their image's size"
            )
        counts = np.bincount(label.ravel(), minlength=256)
        bad = np.flatnonzero(counts[len(self.classes) : IGNORE_LABEL]).tolist()
        if bad:
            raise ValueError(
                f"label {path} holds values {[len(self.classes) + b for b in bad]}; expected class "
                f"indices 0..{len(self.classes) - 1} or 255 (ignore)"
            )
        return label

    def _tags(
        self, sample: Sample, mask: np.ndarray | None, size: tuple[int, int]
    ) -> list[int] | None:
        if not self.index.tags_from_masks:
            return None if sample.tags is None else list(sample.tags)
        if sample.mask is None:
            return None
        if mask is None:
            mask = self._read_label(sample.mask, size)
        return tags_from_mask(
            mask, num_classes=len(self.classes), background_index=self.index.background_index
        )

    def __repr__(self) -> str:
        idx = self.index
        return (
            f"SegmentationDataset(root={str(idx.root)!r}, layout={idx.layout!r}, "
            f"split={idx.split!r}, labels={self.labels!r}, images={len(self)}, "
            f"classes={len(self.classes)})"
        )


def _label_path(sample: Sample, labels: str) -> Any:
    return sample.mask if labels == "masks" else sample.scribble


def tags_from_mask(
    mask: np.ndarray, *, num_classes: int, background_index: int | None = 0
) -> list[int]:
    """Image-level tags of a dense mask: the classes present, background and 255 excluded.

    Args:
        mask: (H, W) uint8 class indices, 255 = ignore.
        num_classes: K; values >= K are not classes.
        background_index: class left out of the tags, or None to keep every class.

    Returns:
        sorted class indices.
    """
    counts = np.bincount(mask.ravel(), minlength=256)[:num_classes]
    present = np.flatnonzero(counts).tolist()
    return [c for c in present if c != background_index]
