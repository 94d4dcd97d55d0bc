"""Per-pixel losses: partial cross-entropy on scribbles (Tang et al., "Normalized Cut Loss for
Weakly-supervised CNN Segmentation", CVPR 2018, the pCE term) and the entropy of the softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wsdeploy.training.losses.checks import check_image_valid, check_label_map, check_probs, compute_dtype
from wsdeploy.training.losses.weighted import WeightedLoss

__all__ = ["EntropyLoss", "entropy_loss", "partial_cross_entropy"]


def partial_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = 255,
    pad_index: int = 254,
) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels (neither `ignore_index` nor `pad_index`).

    With scribbles that is the partial cross-entropy; with full masks, ordinary cross-entropy
    with ignore. A batch without a labelled pixel gives 0, still attached to the graph (its
    gradient is zero), never NaN. Labels must lie in [0, K) on labelled pixels (not checked:
    that would synchronise the GPU).

    Args:
        logits: (B, K, H, W) float, K >= 2, already at the target's resolution.
        target: (B, H, W) integer (int64 preferred), class indices in [0, K),
            `ignore_index` on unlabelled pixels, `pad_index` on padding.
        ignore_index: label of unlabelled pixels (255, the VOC / ScribbleSup convention).
        pad_index: label of padding added by augmentation (254).

    Returns:
        () scalar in logits' dtype (summed in float32 or wider).
    """
    check_probs(logits, "logits")
    check_label_map(
        target, logits, name="target", like_name="logits",
        hint="; upsample the logits to the target's resolution",
    )
    target = target.long()
    labelled = (target != ignore_index) & (target != pad_index)  # (B, H, W)
    target = torch.where(labelled, target, torch.full_like(target, ignore_index))
    total = F.cross_entropy(
        logits.to(compute_dtype(logits.dtype)), target, ignore_index=ignore_index, reduction="sum"
    )
    count = labelled.sum().clamp_min(1)  # a tensor: no host synchronisation
    return (total / count).to(logits.dtype)


def entropy_loss(probs: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over valid pixels of the softmax entropy -sum_k p_k log p_k (0 log 0 = 0).

    The gradient stays finite at p = 0 (the log is taken of p clamped to the dtype's tiny).

    Args:
        probs: (B, K, H, W) float, softmax over K (not checked), K >= 2.
        valid: (B, H, W) bool, False on padding; None means every pixel is valid.

    Returns:
        () scalar in probs' dtype, in [0, log K]; 0 when no pixel is valid.
    """
    check_probs(probs)
    valid = check_image_valid(probs, None, valid)
    p = probs.to(compute_dtype(probs.dtype))
    ent = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(1)  # (B, H, W)
    v = valid.to(p.dtype)
    return ((ent * v).sum() / v.sum().clamp_min(1.0)).to(probs.dtype)


def _entropy_of_probs(probs: torch.Tensor, image: torch.Tensor | None, valid: torch.Tensor | None) -> torch.Tensor:
    return entropy_loss(probs, valid)  # the image takes no part


class EntropyLoss(WeightedLoss):
    """Weighted softmax entropy, `weight * entropy_loss(probs, valid)`; `image` is ignored (any
    value, None included; kept so all regularizers share a call). Shapes: `WeightedLoss`."""

    loss = staticmethod(_entropy_of_probs)

    def __init__(self, weight: float) -> None:
        super().__init__(weight)
