"""Batch `SegmentationDataset` items for a DataLoader, the image kept as uint8; normalise on the
device (one place, `network_input`):

    loader = DataLoader(dataset, batch_size=8, collate_fn=collate_segmentation)
    batch = next(iter(loader))
    x = network_input(batch["image"].to(device), mean, std)   # (B, 3, H, W) float32 there

The uint8 image serves the network (normalised) and the regularized losses (RGB 0-255) alike,
and moves to the GPU at a quarter of the bytes of a float batch.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from wsdeploy.data.image_io import IMAGENET_MEAN, IMAGENET_STD, normalize

__all__ = ["collate_segmentation", "network_input", "tags_to_multihot"]


def network_input(
    image: torch.Tensor,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB on any device -> (B, 3, H, W) float32 (image / 255 - mean) / std
    on that device: `wsdeploy.data.image_io.normalize`, the runtime's own normalisation."""
    return normalize(image.permute(0, 2, 3, 1), mean, std)


def collate_segmentation(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack dataset items into a batch.

    Args:
        items: B item dicts with `image` (H, W, 3) uint8 RGB numpy, `label` (H, W) uint8 or
            None, `tags` list[int] or None, `id` str; every image of the same size (use a crop
            transform for training).

    Returns:
        {"image": (B, 3, H, W) uint8 RGB (channels-last memory), "label": (B, H, W) int64 (255 ignore, 254 padding)
        or None, "tags": list of B (list[int] | None), "id": list[str]}, plus any other key as
        a list of the B values.

    Raises:
        ValueError: no items, images of different sizes, labels given for some items only.
        TypeError: an image that is not a numpy uint8 array.
    """
    if len(items) == 0:
        raise ValueError("cannot collate an empty batch")
    images = [item["image"] for item in items]
    for image in images:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise TypeError(
                "expected item['image'] as a numpy uint8 (H, W, 3) array, got "
                f"{type(image).__name__} {getattr(image, 'dtype', '')}"
            )
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"images in a batch must share one size, got {sorted(shapes)}; crop them "
            "(train_transform) or use batch_size=1"
        )
    # (B, 3, H, W) uint8, a view of the stacked (B, H, W, 3) pixels: channels-last memory,
    # which normalisation keeps and the CPU's convolutions prefer
    batch: dict[str, Any] = {"image": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)}

    labels = [item.get("label") for item in items]
    if all(label is None for label in labels):
        batch["label"] = None
    elif any(label is None for label in labels):
        raise ValueError("some items have a label and some have none; cannot batch them")
    else:
        batch["label"] = torch.from_numpy(np.stack(labels).astype(np.int64))  # (B, H, W)

    for key in items[0]:
        if key not in ("image", "label"):
            batch[key] = [item.get(key) for item in items]
    return batch


def tags_to_multihot(tags: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    """Image-level tags to a multi-hot target for a classification loss.

    Args:
        tags: B lists of class indices in [0, num_classes).
        num_classes: K.

    Returns:
        (B, K) float32, 1 where the class is tagged.

    Raises:
        ValueError: an item without tags (None) or an index outside [0, num_classes).
    """
    out = torch.zeros(len(tags), num_classes, dtype=torch.float32)
    for b, classes in enumerate(tags):
        if classes is None:
            raise ValueError(f"item {b} of the batch has no tags (None)")
        for c in classes:
            if not 0 <= c < num_classes:
                raise ValueError(f"tag {c} of item {b} is outside [0, {num_classes})")
            out[b, c] = 1.0
    return out
