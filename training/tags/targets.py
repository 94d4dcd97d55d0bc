"""Image-level tags: which class is background, and the classifier's (foreground) class list.

A dataset either has a background class that is never tagged but covers every untagged pixel
(PASCAL VOC: index 0, tags derived from masks without it; a folder-layout dataset whose
`classes.txt` names a class "background"), or none (the synthetic benchmark: every class,
stuff included, is tagged). The CAM classifier predicts the foreground classes only, so its
output j is dataset class `foreground[j]`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from wsdeploy.training.collate import tags_to_multihot

__all__ = [
    "background_index",
    "dataset_background_index",
    "foreground_indices",
    "tags_to_foreground_multihot",
]


def background_index(classes: Sequence[str]) -> int | None:
    """Index of the class named "background" (case-insensitive), or None if there is none."""
    found = [i for i, name in enumerate(classes) if name.strip().lower() == "background"]
    if len(found) > 1:
        raise ValueError(f"more than one class is named 'background': indices {found} of {list(classes)}")
    return found[0] if found else None


def dataset_background_index(dataset: Any) -> int | None:
    """The dataset's background class: `dataset.index.background_index` when the layout sets
    it (VOC: 0), else `background_index(dataset.classes)`."""
    index = getattr(dataset, "index", None)
    bg = getattr(index, "background_index", None)
    return bg if bg is not None else background_index(dataset.classes)


def foreground_indices(num_classes: int, background: int | None) -> list[int]:
    """Dataset class indices of the classifier's outputs, in order (background left out)."""
    return [c for c in range(num_classes) if c != background]


def tags_to_foreground_multihot(
    tags: Sequence[Sequence[int] | None], num_classes: int, background: int | None
) -> torch.Tensor:
    """Dataset-index tags -> (B, K_fg) float32 multi-hot over the foreground classes.

    Raises:
        ValueError: an image without tags (None), a tag outside the classes, or a tag naming
            the background class (tags list the objects present; background is implied).
    """
    for b, image_tags in enumerate(tags):
        if image_tags is not None and background is not None and background in image_tags:
            raise ValueError(
                f"item {b} of the batch is tagged with the background class ({background}); "
                "tags must name foreground classes only"
            )
    full = tags_to_multihot(tags, num_classes)  # (B, K)
    return full[:, foreground_indices(num_classes, background)]
