"""Regional semantic contrast for the CAM classifier: region embeddings and a class memory bank.

    contrast = RegionContrast(num_classes=9, in_channels=128, dim=64, bank_size=64)
    features = classifier.backbone.forward_features(x)["layer4"]          # (B, C, h, w)
    cams = classifier.classifier(features)                                 # (B, K, h, w)
    loss = cls_loss + weight * contrast(features, cams, tags_multihot)     # also fills the bank

Provenance: RCA, Zhou et al., "Regional Semantic Contrast and Aggregation for Weakly
Supervised Semantic Segmentation" (CVPR 2022): every tagged class of an image gives a region
embedding pooled from the features under its class map; a memory bank keeps recent region
embeddings of every class; a contrastive loss pulls a region towards its class's entries and
pushes it from the other classes'. RCA pools under pseudo-masks refined with saliency maps;
here the weights are the classifier's own CAM (ReLU, divided by its maximum, no gradient), so
the method stays purely image-level.

Loss. For region i of class c with embedding e_i (L2-normalised), positives P = the bank's
filled entries of class c and negatives N = the filled entries of every other class, s(k) =
e_i . k / tau:

    l_i = -1/|P| sum_{p in P} log( exp(s(p)) / (exp(s(p)) + sum_{n in N} exp(s(n))) )

averaged over the regions that have at least one positive and one negative (0 if none).
The bank holds detached embeddings (no gradient), `bank_size` per class, first in first out.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RegionContrast", "region_contrast_loss", "region_embeddings"]

_EPS = 1e-5


def region_embeddings(features: Tensor, cams: Tensor, tags: Tensor) -> tuple[Tensor, Tensor]:
    """CAM-weighted mean features, one per tagged class of every image.

    Args:
        features: (B, C, h, w) float, e.g. the classifier's layer4 features.
        cams: (B, K, h, w) float class maps at the same resolution (any sign; ReLU'd and
            divided by their spatial maximum, without gradient).
        tags: (B, K) bool or 0/1, the image's classes.

    Returns:
        regions (R, C) float (differentiable in `features`), classes (R,) int64, ordered by
        image then class; R = the number of tags (a map that is zero everywhere gives the
        plain mean of the image's features).
    """
    if features.ndim != 4 or cams.ndim != 4 or features.shape[0] != cams.shape[0] or features.shape[2:] != cams.shape[2:]:
        raise ValueError(
            f"expected features (B, C, h, w) and cams (B, K, h, w) of one size, got {tuple(features.shape)} "
            f"and {tuple(cams.shape)}"
        )
    if tuple(tags.shape) != tuple(cams.shape[:2]):
        raise ValueError(f"expected tags of shape {tuple(cams.shape[:2])} (B, K), got {tuple(tags.shape)}")
    with torch.no_grad():
        w = F.relu(cams.float())
        w = w / (w.amax(dim=(2, 3), keepdim=True) + _EPS)  # (B, K, h, w) in [0, 1]
        w = w + _EPS  # an empty map weighs every position alike
        w = w / w.sum(dim=(2, 3), keepdim=True)
    pooled = torch.einsum("bkhw,bchw->bkc", w.to(features.dtype), features)  # (B, K, C)
    where = tags.to(device=features.device, dtype=torch.bool).nonzero()  # (R, 2): image, class
    return pooled[where[:, 0], where[:, 1]], where[:, 1]


def region_contrast_loss(
    regions: Tensor, classes: Tensor, bank: Tensor, filled: Tensor, *, temperature: float = 0.1
) -> Tensor:
    """The contrastive loss of the module docstring.

    Args:
        regions: (R, E) float, L2-normalised region embeddings.
        classes: (R,) int64 class of each region, in 0..K-1.
        bank: (K, M, E) float, L2-normalised bank entries (no gradient needed).
        filled: (K, M) bool, which entries hold an embedding.
        temperature: tau > 0.

    Returns:
        scalar, regions' dtype and device (0, still differentiable, without any usable region).
    """
    if regions.ndim != 2 or bank.ndim != 3 or regions.shape[1] != bank.shape[2]:
        raise ValueError(f"expected regions (R, E) and bank (K, M, E), got {tuple(regions.shape)} and {tuple(bank.shape)}")
    if tuple(filled.shape) != tuple(bank.shape[:2]) or tuple(classes.shape) != (regions.shape[0],):
        raise ValueError(f"expected filled {tuple(bank.shape[:2])} and classes ({regions.shape[0]},), got "
                         f"{tuple(filled.shape)} and {tuple(classes.shape)}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    k, m, e = bank.shape
    entries = bank.reshape(k * m, e).to(regions.dtype)
    entry_class = torch.arange(k, device=bank.device).repeat_interleave(m)  # (K*M,)
    entry_ok = filled.reshape(-1)
    sim = regions @ entries.T / temperature  # (R, K*M)
    pos = entry_ok[None] & (entry_class[None] == classes[:, None])  # (R, K*M)
    neg = entry_ok[None] & (entry_class[None] != classes[:, None])
    usable = pos.any(1) & neg.any(1)  # (R,)
    if not bool(usable.any()):
        return regions.sum() * 0
    neg_inf = torch.finfo(sim.dtype).min
    neg_lse = torch.where(neg, sim, torch.full_like(sim, neg_inf)).logsumexp(dim=1, keepdim=True)  # (R, 1)
    # -log(e^s / (e^s + sum_n e^n)) = log(e^s + e^lse) - s = softplus(lse - s)
    per_pair = F.softplus(neg_lse - sim)  # (R, K*M)
    per_region = (per_pair * pos).sum(1) / pos.sum(1).clamp_min(1)
    return per_region[usable].mean()


class RegionContrast(nn.Module):
    """Projection head + per-class memory bank + `region_contrast_loss`.

    Args:
        num_classes: K (the classifier's outputs).
        in_channels: C of the features the regions are pooled from.
        dim: E, the projection's width.
        bank_size: M entries per class.
        temperature: tau.

    Calling it on (features (B, C, h, w), cams (B, K, h, w), tags (B, K)) returns the loss of
    this batch against the bank as it was, then (in training mode) pushes the batch's regions
    into the bank. The bank and its write positions are buffers: they are saved and restored
    with the module's state_dict, so a resumed run sees the same bank.
    """

    def __init__(self, *, num_classes: int, in_channels: int, dim: int = 64, bank_size: int = 64,
                 temperature: float = 0.1) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("dim", dim),
                            ("bank_size", bank_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.temperature = float(temperature)
        self.project = nn.Sequential(nn.Linear(in_channels, in_channels), nn.ReLU(), nn.Linear(in_channels, dim))
        self.register_buffer("bank", torch.zeros(num_classes, bank_size, dim))
        self.register_buffer("filled", torch.zeros(num_classes, bank_size, dtype=torch.bool))
        self.register_buffer("cursor", torch.zeros(num_classes, dtype=torch.long))

    def forward(self, features: Tensor, cams: Tensor, tags: Tensor) -> Tensor:
        regions, classes = region_embeddings(features, cams, tags)
        z = F.normalize(self.project(regions.float()), dim=1)  # (R, E)
        # a copy: the loss keeps the bank for its backward, and push() writes the bank in place
        loss = region_contrast_loss(z, classes, self.bank.clone(), self.filled.clone(), temperature=self.temperature)
        if self.training:
            self.push(z.detach(), classes)
        return loss

    @torch.no_grad()
    def push(self, embeddings: Tensor, classes: Tensor) -> None:
        """Write (R, E) normalised embeddings of classes (R,) into the bank, FIFO per class."""
        m = self.bank.shape[1]
        for z, c in zip(embeddings, classes.tolist()):
            slot = int(self.cursor[c]) % m
            self.bank[c, slot] = z.to(self.bank.dtype)
            self.filled[c, slot] = True
            self.cursor[c] = (slot + 1) % m
