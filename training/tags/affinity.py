"""Pixel affinities learnt from CAM seeds: pair labels, the affinity head and its loss.

    labels = affinity_labels(seeds, stride=4, radius=5, background_classes=[0, 1, 2, 3])
    net = AffinityNet(classifier, radius=5, stride=4)      # frozen classifier + trainable head
    affinity = net(x)                                       # (B, D, H/4, W/4) in (0, 1]
    loss = affinity_loss(affinity, labels)

Provenance: AffinityNet (Ahn & Kwak, CVPR 2018, "PSA"): pairs of a coarse grid within a radius
whose seeds are both confident are labelled 1 (same class) or 0 (different classes); the
affinity of an embedding is exp(-mean |f_p - f_q|) and is trained with a cross-entropy balanced
between positive foreground, positive background and negative pairs (1/4, 1/4, 1/2). As in IRN
(Ahn et al., CVPR 2019) the classifier is frozen and only a small head on its multi-level
features is trained.

Seeds to grid. Seeds are (B, H, W) dataset class indices, >= 254 = no seed (255 unlabelled /
ignore band, 254 padding). A grid cell of stride s (its s x s pixels, the image padded to a
multiple of s with "no seed") gets a label only when all its seeded pixels agree and they are
at least `min_fraction` (default half) of the cell, so a cell across a seed boundary gives no
pair at all, and one mostly in the ignore band neither.
"Background" pairs are those of `background_classes`: the dataset's background class, and
stuff classes where a dataset has no background (the synthetic benchmark's sky, grass, sand,
water), whose regions are large and would otherwise outnumber the objects' pairs.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsdeploy.checkpoint import ModelCard, read_checkpoint, save_checkpoint
from wsdeploy.training.tags.random_walk import affinity_from_features, neighbour_offsets

__all__ = [
    "AFFINITY_PREFIX",
    "AffinityHead",
    "AffinityLabels",
    "AffinityNet",
    "affinity_labels",
    "affinity_loss",
    "load_affinity_checkpoint",
    "save_affinity_checkpoint",
    "seeds_to_grid",
]

AFFINITY_PREFIX = "affinity_"  # card.arch = "affinity_" + the classifier's arch
_NO_SEED = 255
_LEVELS = ("layer1", "layer2", "layer3", "layer4")


def seeds_to_grid(seeds: Tensor, stride: int, *, min_fraction: float = 0.5) -> Tensor:
    """Grid labels: a cell's seed where its seeded pixels all share it and make up at least
    `min_fraction` of its s x s pixels, else 255.

    Args:
        seeds: (B, H, W) integer class indices, values >= 254 = no seed.
        stride: s >= 1.
        min_fraction: in (0, 1]; 1 = every pixel of the cell seeded with one class.

    Returns:
        (B, ceil(H/s), ceil(W/s)) int64, 255 = no label; same device.
    """
    if seeds.ndim != 3 or seeds.is_floating_point():
        raise ValueError(f"expected seeds of shape (B, H, W) integer, got {tuple(seeds.shape)} {seeds.dtype}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
    b, h, w = seeds.shape
    gh, gw = -(-h // stride), -(-w // stride)
    x = seeds.long()
    x = torch.where(x >= _NO_SEED - 1, torch.full_like(x, _NO_SEED), x)  # 254 padding -> 255
    x = F.pad(x, (0, gw * stride - w, 0, gh * stride - h), value=_NO_SEED)
    blocks = x.view(b, gh, stride, gw, stride)
    seeded = blocks != _NO_SEED
    lo = torch.where(seeded, blocks, torch.full_like(blocks, _NO_SEED)).amin(dim=(2, 4))  # (B, gh, gw)
    hi = torch.where(seeded, blocks, torch.full_like(blocks, -1)).amax(dim=(2, 4))
    enough = seeded.float().mean(dim=(2, 4)) >= min_fraction - 1e-9
    return torch.where((lo == hi) & enough, lo, torch.full_like(lo, _NO_SEED))


@dataclasses.dataclass
class AffinityLabels:
    """Pair labels on the grid, (B, D, h, w) bool each, pair d of cell (y, x) = offset d of
    `neighbour_offsets(radius)`; a pair is in at most one of the three."""

    foreground: Tensor  # both cells the same non-background class: affinity 1
    background: Tensor  # both cells the same background / stuff class: affinity 1
    negative: Tensor  # both labelled, different classes: affinity 0

    def counts(self) -> dict[str, int]:
        return {k: int(getattr(self, k).sum()) for k in ("foreground", "background", "negative")}


def affinity_labels(
    seeds: Tensor, *, stride: int, radius: int, background_classes: Sequence[int] = (), min_fraction: float = 0.5
) -> AffinityLabels:
    """Label the grid's pairs within `radius` from seeds (module docstring).

    Args:
        seeds: (B, H, W) integer class indices, >= 254 = no seed.
        stride: the affinity grid's stride s.
        radius: pairs with 0 < dy^2 + dx^2 < radius^2 (see `neighbour_offsets`).
        background_classes: class indices whose positive pairs count as background.
        min_fraction: see `seeds_to_grid`.

    Returns:
        `AffinityLabels` of (B, D, ceil(H/s), ceil(W/s)) bool masks, on the seeds' device.
    """
    offsets = neighbour_offsets(radius)
    grid = seeds_to_grid(seeds, stride, min_fraction=min_fraction)  # (B, h, w)
    b, h, w = grid.shape
    r = radius - 1
    padded = F.pad(grid, (r, r, 0, r), value=_NO_SEED)  # partners below, left and right
    bg = torch.zeros(_NO_SEED + 1, dtype=torch.bool, device=grid.device)
    if len(background_classes):
        classes = torch.as_tensor(list(background_classes), dtype=torch.long, device=grid.device)
        if bool(((classes < 0) | (classes >= _NO_SEED - 1)).any()):
            raise ValueError(f"background_classes must be class indices 0..253, got {list(background_classes)}")
        bg[classes] = True
    labelled = grid != _NO_SEED
    is_bg = bg[grid]  # (B, h, w)
    fg_pos, bg_pos, neg = [], [], []
    for dy, dx in offsets:
        partner = padded[:, dy:dy + h, r + dx:r + dx + w]  # (B, h, w)
        both = labelled & (partner != _NO_SEED)
        same = both & (partner == grid)
        fg_pos.append(same & ~is_bg)
        bg_pos.append(same & is_bg)
        neg.append(both & (partner != grid))
    return AffinityLabels(torch.stack(fg_pos, 1), torch.stack(bg_pos, 1), torch.stack(neg, 1))


def affinity_loss(affinity: Tensor, labels: AffinityLabels, *, eps: float = 1e-5) -> Tensor:
    """Balanced pair cross-entropy: 1/4 mean -log a over foreground pairs, 1/4 over background
    pairs, 1/2 mean -log(1 - a) over negative pairs; a group without pairs is left out and the
    others' weights renormalised to sum to 1 (no pair at all: 0, still differentiable).

    Args:
        affinity: (B, D, h, w) float in [0, 1] (`AffinityNet.forward`).
        labels: `affinity_labels` on the same grid.
        eps: added inside the logs.

    Returns:
        scalar tensor, affinity's dtype and device.
    """
    if affinity.shape != labels.foreground.shape:
        raise ValueError(f"affinity {tuple(affinity.shape)} and labels {tuple(labels.foreground.shape)} differ in shape")
    terms = [
        (0.25, labels.foreground, -torch.log(affinity + eps)),
        (0.25, labels.background, -torch.log(affinity + eps)),
        (0.5, labels.negative, -torch.log(1 + eps - affinity)),
    ]
    total = affinity.sum() * 0
    weight = 0.0
    for w, mask, nll in terms:
        n = int(mask.sum())
        if n:
            total = total + w * nll[mask].sum() / n
            weight += w
    return total / weight if weight else total


class AffinityHead(nn.Module):
    """1x1 projections of four feature levels, resized to one grid, fused into an embedding.

    Args:
        in_channels: channels of layer1..layer4 (`ResNet.feature_channels`).
        dim: channels of each level's projection; the embedding has 4 * dim.
        stride: the grid's stride relative to the input (every level is resized to it).

    Shapes: features {name: (B, C_l, H/s_l, W/s_l)} -> (B, 4*dim, H/stride, W/stride) float.
    """

    def __init__(self, in_channels: Mapping[str, int], *, dim: int = 32, stride: int = 4) -> None:
        super().__init__()
        missing = [k for k in _LEVELS if k not in in_channels]
        if missing:
            raise ValueError(f"in_channels must name {list(_LEVELS)}, missing {missing}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        if stride not in (4, 8):
            raise ValueError(f"stride must be 4 or 8 (layer1 / layer2 resolution), got {stride!r}")
        self.stride = stride
        self.proj = nn.ModuleList(nn.Conv2d(in_channels[k], dim, 1, bias=False) for k in _LEVELS)
        self.fuse = nn.Conv2d(4 * dim, 4 * dim, 1, bias=False)
        for conv in self.proj:
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.fuse.weight, gain=4.0)  # spread embeddings: affinities start < 1

    def forward(self, features: Mapping[str, Tensor], size: tuple[int, int]) -> Tensor:
        out = []
        for name, conv in zip(_LEVELS, self.proj):
            f = F.elu(conv(features[name].float()))  # (B, dim, H/s_l, W/s_l)
            if tuple(f.shape[2:]) != tuple(size):
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            out.append(f)
        return F.elu(self.fuse(torch.cat(out, dim=1)))  # (B, 4*dim, h, w)


class AffinityNet(nn.Module):
    """A frozen CAM classifier's backbone + a trainable `AffinityHead`.

    Args:
        classifier: a `CAMClassifier` (its parameters are frozen, its batch norms stay in eval
            mode even under `.train()`).
        radius: pairs within it (see `neighbour_offsets`).
        stride: the affinity grid's stride, 4 or 8.
        dim: the head's per-level width.

    Shapes: x (B, 3, H, W) float32 normalised, H and W multiples of `input_multiple` ->
    forward (B, D, H/stride, W/stride) affinities in (0, 1]; embed -> (B, 4*dim, H/stride, W/stride).
    """

    def __init__(self, classifier: nn.Module, *, radius: int = 5, stride: int = 4, dim: int = 32) -> None:
        super().__init__()
        if not hasattr(classifier, "cam") or not hasattr(classifier, "backbone"):
            raise ValueError("AffinityNet needs a CAM classifier (a classifier_* model)")
        neighbour_offsets(radius)  # validates
        self.classifier = classifier.requires_grad_(False).eval()
        self.head = AffinityHead(classifier.backbone.feature_channels, dim=dim, stride=stride)
        self.radius = radius
        self.stride = stride
        self.dim = dim
        self.input_multiple = max(int(classifier.input_multiple), stride)

    def train(self, mode: bool = True) -> AffinityNet:
        super().train(mode)
        self.classifier.eval()  # frozen, batch-norm statistics included
        return self

    def embed(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) -> the head's embedding (B, 4*dim, H/stride, W/stride)."""
        with torch.no_grad():
            features = self.classifier.backbone.forward_features(x)
        h, w = x.shape[2] // self.stride, x.shape[3] // self.stride
        return self.head(features, (h, w))

    def forward(self, x: Tensor) -> Tensor:
        return affinity_from_features(self.embed(x), radius=self.radius)


def save_affinity_checkpoint(path: str | os.PathLike, net: AffinityNet, classifier_card: ModelCard,
                             *, training: dict[str, Any] | None = None) -> None:
    """Write an affinity checkpoint: classifier + head weights, the classifier's card with
    arch "affinity_<classifier arch>" and the head's settings in `training["affinity"]`."""
    card = dataclasses.replace(
        classifier_card, arch=AFFINITY_PREFIX + classifier_card.arch, evaluation={},
        training={**(training or {}), "affinity": {"radius": net.radius, "stride": net.stride, "dim": net.dim},
                  "classifier_training": classifier_card.training},
    )
    save_checkpoint(path, net, card)


def load_affinity_checkpoint(path: str | os.PathLike) -> tuple[AffinityNet, ModelCard]:
    """Read `save_affinity_checkpoint`'s file (CPU, eval mode).

    Raises:
        ValueError: a checkpoint of another kind (a classifier or a segmenter: the message
            says which and how to train an affinity net), or weights that do not fit.
    """
    from wsdeploy.models import build_model

    card, state = read_checkpoint(path)
    if not card.arch.startswith(AFFINITY_PREFIX):
        kind = "classifier" if card.arch.startswith("classifier_") else "segmenter"
        raise ValueError(
            f"{path} is a {kind} checkpoint ({card.arch!r}); propagation needs an affinity checkpoint "
            "(`wsdeploy train --supervision tags --method affinity --classifier CKPT --seeds DIR`)"
        )
    settings = card.training.get("affinity")
    if not isinstance(settings, dict) or set(settings) != {"radius", "stride", "dim"}:
        raise ValueError(f"{path}: the card's training['affinity'] must hold radius, stride and dim, got {settings!r}")
    kwargs = {k: v for k, v in card.arch_kwargs.items() if k != "backbone_weights"}
    try:
        classifier = build_model(card.arch[len(AFFINITY_PREFIX):], card.num_classes, **kwargs)
        net = AffinityNet(classifier, **settings)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the card's architecture cannot be built: {exc}") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the card: {str(exc).splitlines()[0]}") from None
    return net.eval(), card
