"""Re-label a split with a trained segmenter: the next self-training round's pseudo-masks.

    from wsdeploy.training.tags.relabel import load_segmenter, relabel_dataset

    model, card = load_segmenter("runs/round1/model.pt")      # refuses a classifier checkpoint
    for image_id, labels in relabel_dataset(model, card, data, crf=CRFParams(), confidence=0.5):
        write_label_png(f"labels/{image_id}.png", labels)     # dataset indices, 255 = unsure

The segmenter's softmax is restricted to the image's tags (the classes it does not contain get
probability 0, the rest renormalised; a dataset's background class is always allowed), then
optionally refined by the dense CRF, and each pixel takes the most probable class; with
`confidence`, pixels whose top probability is below it are left unlabelled (255), so the next
round's pCE sees only confident pixels, the same file conventions as the seeds.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsdeploy.checkpoint import ModelCard, load_checkpoint, read_checkpoint
from wsdeploy.crf import CRFParams, dense_crf
from wsdeploy.data.image_io import normalize
from wsdeploy.training.tags.targets import dataset_background_index

__all__ = ["load_segmenter", "relabel_dataset", "relabel_images", "segmenter_logits"]

_IGNORE = 255


def load_segmenter(path: str | os.PathLike) -> tuple[nn.Module, ModelCard]:
    """`load_checkpoint` for a segmentation model; a clear error for any other kind.

    Raises:
        ValueError: a classifier or affinity checkpoint (the message says what it is and which
            checkpoint is expected), or anything `load_checkpoint` refuses.
    """
    card, _ = read_checkpoint(path)
    if card.arch.startswith(("classifier_", "affinity_")):
        kind = "CAM classifier" if card.arch.startswith("classifier_") else "affinity"
        raise ValueError(
            f"{path} is a {kind} checkpoint ({card.arch!r}); re-labelling needs a segmenter "
            "(the model.pt of `wsdeploy train --supervision tags --method seeds-rloss`)"
        )
    return load_checkpoint(path)


@torch.no_grad()
def segmenter_logits(model: nn.Module, card: ModelCard, images: np.ndarray) -> torch.Tensor:
    """The segmenter's class scores at the images' own size.

    Args:
        model: a segmentation model in eval mode (its device is used).
        card: its card (mean/std).
        images: (B, H, W, 3) uint8 RGB.

    Returns:
        (B, K, H, W) float32 logits on the model's device: the input padded to the model's
        multiple, the output upsampled bilinearly and cropped back.
    """
    device = next(model.parameters()).device
    x = normalize(torch.as_tensor(images).to(device), tuple(card.mean), tuple(card.std))  # (B, 3, H, W)
    _, _, h, w = x.shape
    m = int(getattr(model, "input_multiple", 1))
    ph, pw = -(-h // m) * m, -(-w // m) * m
    logits = model(F.pad(x, (0, pw - w, 0, ph - h)))  # (B, K, ph/s, pw/s)
    return F.interpolate(logits.float(), size=(ph, pw), mode="bilinear", align_corners=False)[:, :, :h, :w]


@torch.no_grad()
def relabel_images(
    model: nn.Module, card: ModelCard, images: np.ndarray, allowed: torch.Tensor, *,
    crf: CRFParams | None = None, confidence: float | None = None,
) -> np.ndarray:
    """Labels of a batch of same-size images.

    Args:
        model: a segmentation model in eval mode (its device is used).
        card: its card (mean/std; its classes are the dataset's, in order).
        images: (B, H, W, 3) uint8 RGB.
        allowed: (B, K) bool, the classes each image may take (its tags and the background).
        crf: dense-CRF settings, or None for no refinement.
        confidence: leave pixels whose top probability is below it unlabelled, or None.

    Returns:
        (B, H, W) uint8 class indices, 255 = unlabelled.
    """
    device = next(model.parameters()).device
    logits = segmenter_logits(model, card, images)
    if allowed.shape != logits.shape[:2]:
        raise ValueError(f"expected allowed of shape {tuple(logits.shape[:2])} (B, K), got {tuple(allowed.shape)}")
    keep = allowed.to(device=device, dtype=torch.bool)[:, :, None, None]
    logits = logits.masked_fill(~keep, float("-inf"))
    probs = logits.softmax(dim=1).nan_to_num(0.0)  # an image with no allowed class: all 0
    if crf is not None:
        q = probs.clamp_min(1e-8) * keep  # every allowed class keeps a little mass
        q = q / q.sum(dim=1, keepdim=True).clamp_min(1e-8)
        probs = dense_crf(torch.as_tensor(images).to(device), q, **crf.as_dict()) * keep
    top, labels = probs.max(dim=1)  # (B, H, W)
    labels = labels.to(torch.uint8)
    if confidence is not None:
        labels[top < confidence] = _IGNORE
    labels[~keep.flatten(1).any(1)] = _IGNORE
    return labels.cpu().numpy()


def relabel_dataset(
    model: nn.Module, card: ModelCard, dataset: Any, *, crf: CRFParams | None = None,
    confidence: float | None = None, batch_size: int = 8, device: str | torch.device = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Labels for every image of `dataset` (consecutive images of one size batched).

    Args:
        model, card: from `load_segmenter`; card.classes must be the dataset's classes.
        dataset: a `SegmentationDataset` without transform (items with "image", "tags", "id").
        crf, confidence: see `relabel_images`.
        batch_size: images per forward pass.
        device: "auto", "cpu" or "cuda[:N]".
        progress: called as `progress(done, total)` after every batch.

    Yields:
        (id, labels (H, W) uint8, dataset class indices, 255 = unlabelled).

    Raises:
        ValueError: the model's classes are not the dataset's, or an image without tags.
    """
    from wsdeploy.backends.torch_backend import resolve_device

    if list(card.classes) != list(dataset.classes):
        raise ValueError(f"the segmenter predicts {list(card.classes)}; the dataset has {list(dataset.classes)}")
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be in [0, 1] or None, got {confidence!r}")
    k = len(dataset.classes)
    bg = dataset_background_index(dataset)
    model = model.to(resolve_device(device)).eval()
    pending: list[dict[str, Any]] = []
    total = len(dataset)

    def flush() -> Iterator[tuple[str, np.ndarray]]:
        allowed = torch.zeros(len(pending), k, dtype=torch.bool)
        for row, item in enumerate(pending):
            allowed[row, [int(t) for t in item["tags"]]] = True
            if bg is not None:
                allowed[row, bg] = True
        images = np.stack([it["image"] for it in pending])
        out = relabel_images(model, card, images, allowed, crf=crf, confidence=confidence)
        for item, labels in zip(pending, out):
            yield item["id"], labels
        pending.clear()

    for done in range(1, total + 1):
        item = dataset[done - 1]
        if item.get("tags") is None:
            raise ValueError(f"image {item['id']!r} has no tags; re-labelling keeps each image to its tags")
        if pending and (len(pending) >= batch_size or pending[0]["image"].shape != item["image"].shape):
            yield from flush()
            if progress is not None:
                progress(done - 1, total)
        pending.append(item)
    if pending:
        yield from flush()
        if progress is not None:
            progress(total, total)
