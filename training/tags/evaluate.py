"""Validation of a CAM classifier: how well it predicts the image-level tags (mAP, F1).

The classifier is trained for its CAMs, not for classification, but a classifier that cannot
tell which classes are present gives CAMs that cannot either; mAP is the usual sanity check
(PSA / IRN report it). Scores and targets of every rank are gathered, so DDP evaluates once.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from wsdeploy.training.collate import network_input
from wsdeploy.training.distributed import DistContext, all_gather_objects
from wsdeploy.training.tags.targets import tags_to_foreground_multihot

__all__ = ["average_precision", "evaluate_classifier"]


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """Average precision of one class: mean precision at the rank of each positive.

    Args:
        scores: (N,) float, higher = more confident.
        targets: (N,) {0, 1}.

    Returns:
        AP in [0, 1], or None when the class has no positive (AP is undefined).
    """
    positives = int(targets.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    hits = targets[order].astype(np.float64)
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_k * hits).sum() / positives)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    class_names: Sequence[str],
    num_dataset_classes: int,
    background: int | None,
    ctx: DistContext,
    autocast: AbstractContextManager[Any] | None = None,
) -> dict[str, Any]:
    """Score a multi-label classifier on this rank's validation batches, gathered over ranks.

    Args:
        model: (B, 3, H, W) -> (B, K_fg) logits (unwrapped).
        batches: collated batches with "image" (B, 3, H, W) uint8 and "tags" (dataset indices).
        class_names: the K_fg class names of the classifier's outputs.
        num_dataset_classes, background: map dataset tags to the classifier's outputs.
        ctx: distributed context (every rank must call this).
        autocast: mixed-precision context for the forward pass, or None.

    Returns:
        {"map": mean AP over classes with a positive, "f1": micro F1 at logit 0 (p = 0.5),
        "per_class_ap": {name: AP or None}, "images": N}.
    """
    was_training = model.training
    model.eval()
    scores, targets = [], []
    try:
        for batch in batches:
            with autocast or nullcontext():
                logits = model(network_input(batch["image"].to(ctx.device)))  # (B, K_fg)
            scores.append(logits.float().cpu().numpy())
            targets.append(tags_to_foreground_multihot(batch["tags"], num_dataset_classes, background).numpy())
    finally:
        model.train(was_training)
    k = len(class_names)
    gathered = all_gather_objects((scores, targets), ctx)
    all_scores = np.concatenate([s for part in gathered for s in part[0]] or [np.zeros((0, k))])
    all_targets = np.concatenate([t for part in gathered for t in part[1]] or [np.zeros((0, k))])
    per_class = {
        name: average_precision(all_scores[:, j], all_targets[:, j]) for j, name in enumerate(class_names)
    }
    defined = [ap for ap in per_class.values() if ap is not None]
    predicted = all_scores > 0
    tp = float((predicted & (all_targets > 0)).sum())
    f1 = 2 * tp / max(float(predicted.sum() + all_targets.sum()), 1.0)
    return {
        "map": float(np.mean(defined)) if defined else None,
        "f1": f1,
        "per_class_ap": per_class,
        "images": int(all_scores.shape[0]),
    }
