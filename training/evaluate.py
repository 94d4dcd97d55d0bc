"""Validation: mean IoU of a segmentation model on whole images, summed over DDP ranks.

Images are padded (bottom, right) to the model's input multiple by `val_transform`, the logits
upsampled to the padded size and cropped back to the image, so every original pixel is scored
once at its own resolution.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wsdeploy.metrics import SegmentationMetric
from wsdeploy.training.distributed import DistContext, all_reduce_sum

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    class_names: Sequence[str],
    ctx: DistContext,
    autocast: AbstractContextManager[Any] | None = None,
) -> dict[str, Any]:
    """Score `model` on this rank's share of the validation batches; sum over ranks.

    Args:
        model: segmentation model (unwrapped), (B, 3, H, W) -> (B, K, H/s, W/s) logits.
        batches: collated batches with "image" (B, 3, H, W) float32 normalised and padded,
            "label" (B, H, W) int64 (255 ignore, 254 padding) and "orig_size" list of (h, w).
        class_names: the K class names.
        ctx: the distributed context; every rank must call this (the matrices are all-reduced).
        autocast: mixed-precision context for the forward pass, or None.

    Returns:
        `SegmentationMetric.summary()`: miou, pixel_accuracy, mean_accuracy, per-class values.
    """
    k = len(class_names)
    local = SegmentationMetric(k, ignore_index=(254, 255))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            x = batch["image"].to(ctx.device)  # (B, 3, Hp, Wp)
            with autocast or nullcontext():
                logits = model(x)  # (B, K, Hp/s, Wp/s)
            logits = F.interpolate(logits.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
            pred = logits.argmax(dim=1).cpu()  # (B, Hp, Wp)
            for b, (h, w) in enumerate(batch["orig_size"]):
                local.update(pred[b, :h, :w], batch["label"][b, :h, :w])
    finally:
        model.train(was_training)
    matrix = torch.from_numpy(local.confusion_matrix).to(ctx.device)  # (K, K) int64
    all_reduce_sum(matrix, ctx)
    total = SegmentationMetric(k, class_names=class_names)
    total.add_confusion_matrix(matrix.cpu())
    return total.summary()
