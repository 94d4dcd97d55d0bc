"""The training objective: partial cross-entropy on labelled pixels plus weighted regularizers.

Provenance: Tang et al., "On Regularized Losses for Weakly-supervised CNN Segmentation"
(ECCV 2018) and its code (`rloss`): the network's logits are upsampled to the crop, pCE is taken
on the scribbled pixels, and each regularizer sees the softmax of the same logits together with
the RGB crop (0..255) and a mask of the pixels that are not augmentation padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsdeploy.data.labels import IGNORE_LABEL, PAD_LABEL
from wsdeploy.training.config import TrainConfig

__all__ = ["build_regularizers", "compute_losses"]


def build_regularizers(config: TrainConfig) -> dict[str, nn.Module]:
    """The regularizers named in `config.losses` (pce excluded), in that order, with their
    weights and settings from the config."""
    from wsdeploy.training import losses as L

    def make(name: str) -> nn.Module:
        if name == "crf":
            return L.DenseCRFLoss(
                config.crf_weight,
                sigma_rgb=config.crf_sigma_rgb,
                sigma_xy=config.crf_sigma_xy,
                scale_factor=config.crf_scale,
                relaxation=config.relaxation,
            )
        if name == "potts":
            return L.GridPottsLoss(
                config.potts_weight,
                neighbours=config.potts_neighbours,
                sigma_rgb=config.potts_sigma_rgb,
                relaxation=config.relaxation,
            )
        if name == "ncut":
            return L.NormalizedCutLoss(
                config.ncut_weight,
                sigma_rgb=config.ncut_sigma_rgb,
                sigma_xy=config.ncut_sigma_xy,
                scale_factor=config.ncut_scale,
            )
        if name == "entropy":
            return L.EntropyLoss(config.entropy_weight)
        raise ValueError(f"unknown regularizer {name!r}")

    return {name: make(name) for name in config.loss_names if name != "pce"}


def compute_losses(
    logits: Tensor, label: Tensor, rgb: Tensor, regularizers: dict[str, nn.Module]
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its terms for one batch.

    Args:
        logits: (B, K, h, w) network output at its logit stride (any float dtype).
        label: (B, H, W) int64 class indices; 255 = unlabelled, 254 = padding (both skipped).
        rgb: (B, 3, H, W) float32 RGB in 0..255, the augmented crop the logits were computed on.
        regularizers: name -> module called as `(probs, rgb, valid)`, already weighted; an empty
            dict gives pCE alone (phase one of the two-phase schedule).

    Returns:
        (total: scalar float32, terms: {"pce": scalar, name: scalar, ...}), every term weighted.
    """
    from wsdeploy.training.losses import partial_cross_entropy

    if label.ndim != 3 or logits.ndim != 4 or rgb.shape[-2:] != label.shape[-2:]:
        raise ValueError(
            f"expected logits (B, K, h, w), label (B, H, W), rgb (B, 3, H, W); got "
            f"{tuple(logits.shape)}, {tuple(label.shape)}, {tuple(rgb.shape)}"
        )
    logits = F.interpolate(logits.float(), size=label.shape[-2:], mode="bilinear", align_corners=False)
    terms = {
        "pce": partial_cross_entropy(logits, label, ignore_index=IGNORE_LABEL, pad_index=PAD_LABEL)
    }
    if regularizers:
        probs = torch.softmax(logits, dim=1)  # (B, K, H, W)
        valid = label != PAD_LABEL  # (B, H, W) bool
        for name, module in regularizers.items():
            terms[name] = module(probs, rgb, valid)
    total = torch.stack(list(terms.values())).sum()
    return total, terms


def classifier_losses(logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The CAM classifier's loss: multi-label soft margin (per-class sigmoid BCE, averaged).

    Args:
        logits: (B, K_fg) class scores (the CAMs' spatial means).
        targets: (B, K_fg) float32 multi-hot tags over the classifier's classes.
    """
    loss = F.multilabel_soft_margin_loss(logits.float(), targets)
    return loss, {"soft_margin": loss}


def sec_losses(
    logits: Tensor, label: Tensor, rgb: Tensor, tags: Tensor, sec: nn.Module
) -> tuple[Tensor, dict[str, Tensor]]:
    """SEC's seed / expand / constrain terms at the logits' resolution (see `wsdeploy.training.losses.sec`).

    Args:
        logits: (B, K, h, w) network output.
        label: (B, H, W) int64 seeds; 255 = no seed, 254 = padding.
        rgb: (B, 3, H, W) float32 0..255, the crop.
        tags: (B, K) float32 multi-hot over the dataset's classes (background never tagged).
        sec: a `SECLoss` (weighted terms).
    """
    terms = sec(logits.float(), label, tags, rgb, valid=label != PAD_LABEL)
    return torch.stack(list(terms.values())).sum(), terms
