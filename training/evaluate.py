"""Validation: mean IoU of a segmentation model on whole images, summed over DDP ranks.

Images are padded (bottom, right) to the model's input multiple by `val_transform`; the logits
go through the runtime's own post-processing (`wsdeploy.runtime.upsample_logits`: bilinear to
the padded size, padding cropped; `class_argmax`), so every original pixel is scored once at its
own resolution, exactly as `wsdeploy.load(...).segment(...)` would label it.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from wsdeploy.data.labels import IGNORE_LABEL, PAD_LABEL
from wsdeploy.metrics import SegmentationMetric
from wsdeploy.runtime import class_argmax, upsample_logits
from wsdeploy.training.collate import network_input
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
        batches: collated batches with "image" (B, 3, H, W) uint8 RGB, padded,
            "label" (B, H, W) int64 (255 ignore, 254 padding) and "orig_size" list of (h, w).
        class_names: the K class names.
        ctx: the distributed context; every rank must call this (the matrices are all-reduced).
        autocast: mixed-precision context for the forward pass, or None.

    Returns:
        `SegmentationMetric.summary()`: miou, pixel_accuracy, mean_accuracy, per-class values.
    """
    k = len(class_names)
    local = SegmentationMetric(k, ignore_index=(PAD_LABEL, IGNORE_LABEL))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            x = network_input(batch["image"].to(ctx.device))  # (B, 3, Hp, Wp) float32
            with autocast or nullcontext():
                logits = model(x)  # (B, K, Hp/s, Wp/s)
            for b, (h, w) in enumerate(batch["orig_size"]):
                scores = upsample_logits(logits[b], stride=model.logit_stride, height=h, width=w)  # (K, h, w)
                local.update(class_argmax(scores).cpu(), batch["label"][b, :h, :w])
    finally:
        model.train(was_training)
    matrix = torch.from_numpy(local.confusion_matrix).to(ctx.device)  # (K, K) int64
    all_reduce_sum(matrix, ctx)
    total = SegmentationMetric(k, class_names=class_names)
    total.add_confusion_matrix(matrix.cpu())
    return total.summary()
