"""SEC's three losses for image-level tags: seed, expand and constrain (Kolesnikov & Lampert,
"Seed, Expand and Constrain: Three Principles for Weakly-Supervised Image Segmentation",
ECCV 2016).

Longer than the house's ~400 lines on purpose: the three terms and the module that weights
them share the seeds' and tags' conventions, and SEC is read as one method.

    from wsdeploy.training.losses.sec import SECLoss
    sec = SECLoss(21, background_index=0)
    terms = sec(logits, seeds, tags, rgb)            # {"seed", "expand", "constrain"}, weighted
    sum(terms.values()).backward()

f = softmax of the logits (B, K, h, w), S the seeds, T the image's tags, C' the classes other
than the background (all classes when there is none):

    seed       -1/|S| sum_{u in S} log f_{u, S(u)}                      over the batch's seeds
    expand     -1/|T| sum_{c in T} log G_c(d+)
               - 1/|C' \\ T| sum_{c in C' \\ T} log(1 - max_u f_{u,c})
               - log G_bg(d-)                                          per image, batch mean
    constrain  1/n sum_u sum_c Q_{u,c} log(Q_{u,c} / f_{u,c}),  Q = dense CRF of f (no gradient)

G is global weighted rank pooling (`gwrp`): the class's scores sorted in decreasing order,
averaged with weights d^rank. An empty set contributes 0 (all classes tagged: no absent term;
no tag: no present term); without a background class there is no G_bg term.

Resolution: SEC computes all three at the network's output resolution (41x41 for a 321 crop),
and `SECLoss` does too: seeds, valid mask and image are downsampled to the logits (B, K, h, w).
This matters for the expand term, as GWRP's weights are per pixel *rank*: d^j decays over
about 1 / (1 - d) pixels whatever the map size. The weight mass sum_j d^j / N is 15 % of
SEC's 41x41 map for d = 0.996 and 48 % for 0.999, but 24 % and 63 % of a 32x32 map (our
stride-4 logits of a 128 crop), so the same decays ask for larger objects there.
`rescale_decay` converts a decay to another pixel count keeping the weight a function of the
rank *fraction* (0.996 -> 0.99344, 0.999 -> 0.99836 at 32x32); the defaults stay SEC's.

Logarithms are taken of values clamped to the compute dtype's `tiny` (1.2e-38 in float32), as
`entropy_loss` does: the values stay finite, and the gradient with respect to the logits is
exact (and bounded by 1 per pixel) until a probability underflows to zero; clamping at 1e-8
instead would silence the gradient of a confidently wrong seed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wsdeploy.crf import CRFParams, dense_crf
from wsdeploy.data.labels import IGNORE_LABEL, PAD_LABEL

from wsdeploy.training.losses.checks import check_image_valid, check_label_map, check_probs, check_weight, compute_dtype

__all__ = [
    "SEC_CRF_PARAMS",
    "SECLoss",
    "constrain_loss",
    "expansion_loss",
    "gwrp",
    "rescale_decay",
    "seeding_loss",
]

# SEC's released code runs the CRF on the 41x41 output with Krähenbühl's kernel settings and
# the positional sigmas divided by a scale factor of 12: bilateral w=10, sigma_xy=80/12 (6.7
# logit pixels, about a sixth of the map), sigma_rgb=13; Gaussian w=3, sigma_xy=3/12 (which
# leaves the smoothness kernel little more than each pixel's own term); 10 iterations. In
# logit pixels these suit any map of about that size (our 32x32 included); override with
# `crf_kwargs`.
SEC_CRF_PARAMS = CRFParams(
    iterations=10, bilateral_weight=10.0, bilateral_sigma_xy=80.0 / 12.0,
    bilateral_sigma_rgb=13.0, gaussian_weight=3.0, gaussian_sigma_xy=3.0 / 12.0,
)
SEC_PIXELS = 41 * 41  # the map size SEC's decays 0.996 / 0.999 were set for


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp_min(torch.finfo(x.dtype).tiny))


def _check_decay(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (0 = max, 1 = mean), got {value}")
    return float(value)


def rescale_decay(decay: float, num_pixels: int, *, reference_pixels: int = SEC_PIXELS) -> float:
    """The GWRP decay on a `num_pixels` map that weighs rank fractions as `decay` does on a
    `reference_pixels` map: decay ** (reference_pixels / num_pixels).

    E.g. SEC's 0.996 at 41x41 is 0.99344 at 32x32: both give the pixel at rank fraction t the
    weight 0.996 ** (1681 t).
    """
    decay = _check_decay("decay", decay)
    for name, n in (("num_pixels", num_pixels), ("reference_pixels", reference_pixels)):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"{name} must be an int >= 1, got {n!r}")
    return decay ** (reference_pixels / num_pixels)


def gwrp(
    scores: torch.Tensor, decay: float | torch.Tensor, *, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Global weighted rank pooling over space: G = sum_j d^j s_(j) / sum_j d^j, s_(0) >= s_(1) ...

    Per (image, class) the scores of the valid pixels are sorted in decreasing order; j runs
    over the image's valid pixels only, so the normaliser is the sum of d^j over its valid
    count and invalid pixels have weight 0 (and zero gradient). d = 1 gives the mean, d = 0 the
    max. Differentiable with respect to `scores` (through the sorted values; with ties the
    gradient goes to one of the tied pixels, a subgradient).

    Args:
        scores: (B, K, N) or (B, K, H, W) float, e.g. softmax probabilities.
        decay: float in [0, 1], or (K,) float tensor in [0, 1], one decay per class.
        valid: (B, N) or (B, H, W) bool, False on padding; None means every pixel is valid.

    Returns:
        (B, K) in scores' dtype (computed in float32 or wider); 0 for an image without a
        valid pixel.
    """
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.ndim not in (3, 4) or scores.numel() == 0:
        raise ValueError(
            f"expected non-empty scores (B, K, N) or (B, K, H, W), got {tuple(scores.shape)}"
        )
    if not scores.is_floating_point():
        raise TypeError(f"expected scores to be a float tensor, got {scores.dtype}")
    b, k = scores.shape[:2]
    dtype = compute_dtype(scores.dtype)
    s = scores.reshape(b, k, -1).to(dtype)  # (B, K, N)
    n = s.shape[-1]
    if isinstance(decay, torch.Tensor):
        if tuple(decay.shape) != (k,) or not decay.is_floating_point():
            raise ValueError(
                f"expected decay as a float (K,) = ({k},) tensor, got {decay.dtype} "
                f"{tuple(decay.shape)}"
            )
        d = decay.detach()
        if bool(((d < 0) | (d > 1) | d.isnan()).any()):  # on decay's own device
            raise ValueError(f"decay must lie in [0, 1], got {decay.tolist()}")
        d = d.to(scores.device, dtype)
    else:
        d = torch.full((k,), _check_decay("decay", decay), dtype=dtype, device=scores.device)
    ranks = torch.arange(n, device=scores.device)  # (N,)
    weights = torch.pow(d[:, None], ranks.to(dtype))  # (K, N) d_k^j, with 0^0 = 1
    if valid is None:
        top = s.sort(dim=-1, descending=True).values  # (B, K, N)
        weights = weights.expand(b, k, n)
    else:
        expected = (b, *scores.shape[2:])
        if not isinstance(valid, torch.Tensor):
            raise TypeError(f"valid must be a torch.Tensor, got {type(valid).__name__}")
        if tuple(valid.shape) != expected or valid.dtype != torch.bool:
            raise ValueError(
                f"expected valid as a bool tensor of shape {expected}, got {valid.dtype} "
                f"{tuple(valid.shape)}"
            )
        v = valid.to(scores.device).reshape(b, 1, n)  # (B, 1, N)
        key = s.detach().masked_fill(~v, -math.inf)  # invalid pixels sort last
        top = s.gather(-1, key.sort(dim=-1, descending=True).indices)  # (B, K, N)
        count = v.sum(-1, keepdim=True)  # (B, 1, 1) valid pixels per image
        weights = weights * (ranks < count)  # (B, K, N), zero past the valid count
    norm = weights.sum(-1).clamp_min(torch.finfo(dtype).tiny)  # (B, K)
    return ((weights * top).sum(-1) / norm).to(scores.dtype)


def seeding_loss(
    probs: torch.Tensor, seeds: torch.Tensor, *, ignore_index: int = 255, pad_index: int = 254
) -> torch.Tensor:
    """SEC's seeding loss: -mean of log f_{u, seed(u)} over the seeded pixels of the batch.

    All seeds of the batch share one normaliser (the batch's seed count), so an image with
    many seeds weighs more. A batch without a seed gives 0, attached to the graph (zero
    gradient), never NaN. Seeds must lie in [0, K) on seeded pixels (not checked).

    Args:
        probs: (B, K, H, W) float, softmax over K (not checked), K >= 2.
        seeds: (B, H, W) integer, class indices in [0, K), `ignore_index` where unseeded,
            `pad_index` on padding.
        ignore_index: label of unseeded pixels (255).
        pad_index: label of augmentation padding (254).

    Returns:
        () scalar in probs' dtype, >= 0.
    """
    check_probs(probs)
    check_label_map(seeds, probs, name="seeds", like_name="probs")
    seeded = (seeds != ignore_index) & (seeds != pad_index)  # (B, H, W)
    index = torch.where(seeded, seeds.long(), 0)[:, None]  # (B, 1, H, W)
    log_p = _log(probs.to(compute_dtype(probs.dtype)).gather(1, index)[:, 0])  # (B, H, W)
    total = -torch.where(seeded, log_p, 0.0).sum()
    return (total / seeded.sum().clamp_min(1)).to(probs.dtype)


def expansion_loss(
    probs: torch.Tensor,
    tags: torch.Tensor,
    *,
    background_index: int | None,
    fg_decay: float = 0.996,
    bg_decay: float = 0.999,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """SEC's expansion loss (GWRP over present classes, max over absent ones, background).

    Per image: -mean_{c in T} log G_c(fg_decay) - mean_{c in C' \\ T} log(1 - max_u f_{u,c})
    - log G_bg(bg_decay), then the mean over the images that have a valid pixel (0, with a
    graph, when none has). T = the tagged classes, C' = every class but the background; the
    background column of `tags` is ignored (it is always present). An empty set adds 0.

    Args:
        probs: (B, K, H, W) float, softmax over K (not checked), K >= 2.
        tags: (B, K) float multi-hot (> 0.5 = present) or bool, dataset class indices.
        background_index: the always-present background class in [0, K), or None when every
            class is taggable (then there is no background term).
        fg_decay: GWRP decay of the tagged classes, in [0, 1] (SEC: 0.996 at 41x41).
        bg_decay: GWRP decay of the background, in [0, 1] (SEC: 0.999 at 41x41).
        valid: (B, H, W) bool, False on padding; None means every pixel is valid.

    Returns:
        () scalar in probs' dtype, >= 0.
    """
    check_probs(probs)
    valid = check_image_valid(probs, None, valid)
    k = probs.shape[1]
    present = _check_tags(tags, probs)  # (B, K) bool
    bg = _check_background(background_index, k)
    decay = torch.full((k,), _check_decay("fg_decay", fg_decay), dtype=compute_dtype(probs.dtype))
    if bg is not None:
        decay[bg] = _check_decay("bg_decay", bg_decay)
    p = probs.to(compute_dtype(probs.dtype))
    g = gwrp(p, decay, valid=valid)  # (B, K)
    peak = torch.where(valid[:, None], p, 0.0).flatten(2).amax(-1)  # (B, K) max over valid pixels
    foreground = torch.ones(k, dtype=torch.bool, device=p.device)
    if bg is not None:
        foreground[bg] = False
    present = present & foreground  # (B, K)
    absent = ~present & foreground
    loss = -(torch.where(present, _log(g), 0.0).sum(1) / present.sum(1).clamp_min(1))  # (B,)
    loss = loss - torch.where(absent, _log(1.0 - peak), 0.0).sum(1) / absent.sum(1).clamp_min(1)
    if bg is not None:
        loss = loss - _log(g[:, bg])
    has_pixels = valid.flatten(1).any(1)  # (B,)
    loss = torch.where(has_pixels, loss, 0.0).sum() / has_pixels.sum().clamp_min(1)
    return loss.to(probs.dtype)


def constrain_loss(
    probs: torch.Tensor,
    rgb: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    crf_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """SEC's constrain loss: mean over valid pixels of KL(Q_u || f_u), Q = dense CRF of f.

    Q = `dense_crf(rgb, f)` is computed without gradient (a fixed target, as in SEC), so the
    gradient with respect to f is -Q / f / n. The CRF runs on the whole map, padding
    included; only the mean leaves padded pixels out.

    Args:
        probs: (B, K, H, W) float, softmax over K (sums to 1, checked by `dense_crf`), K >= 2.
        rgb: (B, 3, H, W) uint8 or float RGB in 0-255 (rounded to uint8 for the CRF), at the
            resolution of `probs`, on its device.
        valid: (B, H, W) bool, False on padding; None means every pixel is valid.
        crf_kwargs: `dense_crf` settings overriding `SEC_CRF_PARAMS` (SEC's, in pixels of
            `probs`); an unknown name raises ValueError.

    Returns:
        () scalar in probs' dtype, >= 0 (up to the CRF's float32 rounding); 0 when no pixel
        is valid.
    """
    check_probs(probs)
    valid = check_image_valid(probs, rgb, valid)
    params = _crf_params(crf_kwargs)
    with torch.no_grad():
        image = rgb.detach().float().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        q = dense_crf(image.contiguous(), probs.detach(), **params.as_dict())
    # q: (B, K, H, W) in probs' dtype (computed in float32), a constant
    p = probs.to(compute_dtype(probs.dtype))
    q = q.to(p.dtype)
    kl = (q * (_log(q) - _log(p))).sum(1)  # (B, H, W)
    v = valid.to(p.dtype)
    return ((kl * v).sum() / v.sum().clamp_min(1.0)).to(probs.dtype)


class SECLoss(nn.Module):
    """SEC's objective at the logits' resolution: weighted seed, expand and constrain terms.

    `forward` downsamples the seeds (nearest-exact: a logit pixel takes the label at the
    centre of its cell, never an invented one), the valid mask (a logit pixel is valid when
    its whole cell is) and the image (area average, rounded to uint8 by the CRF) to the
    logits' size, then takes all three losses there, as SEC does. Seeds on logit pixels that
    are not valid are dropped. The GWRP decays are per pixel rank, so they depend on h * w;
    see `rescale_decay`.

    Args:
        num_classes: K, the dataset's classes (the logits' channels), >= 2.
        background_index: the always-present background class in [0, K), or None.
        seed_weight, expand_weight, constrain_weight: multipliers, >= 0 (SEC: 1, 1, 1); a
            zero constrain weight skips the CRF.
        fg_decay, bg_decay: GWRP decays in [0, 1] (SEC: 0.996, 0.999 at 41x41).
        crf_kwargs: `dense_crf` settings overriding `SEC_CRF_PARAMS`, in logit pixels.

    Shape:
        - logits: (B, K, h, w) float, the network's output.
        - seeds: (B, H, W) int64, class indices, 255 = unseeded, 254 = padding.
        - tags: (B, K) float multi-hot of dataset classes (the background column is ignored).
        - rgb: (B, 3, H, W) float RGB 0-255 (or uint8), the crop the logits were computed on.
        - valid: (B, H, W) bool, False on padding; None means `seeds != 254`.
        - Output: {"seed", "expand", "constrain"}: () float32 scalars, already weighted.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        background_index: int | None,
        seed_weight: float = 1.0,
        expand_weight: float = 1.0,
        constrain_weight: float = 1.0,
        fg_decay: float = 0.996,
        bg_decay: float = 0.999,
        crf_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
                or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.background_index = _check_background(background_index, self.num_classes)
        self.seed_weight = check_weight(seed_weight)
        self.expand_weight = check_weight(expand_weight)
        self.constrain_weight = check_weight(constrain_weight)
        self.fg_decay = _check_decay("fg_decay", fg_decay)
        self.bg_decay = _check_decay("bg_decay", bg_decay)
        self.crf_params = _crf_params(crf_kwargs)

    def forward(
        self,
        logits: torch.Tensor,
        seeds: torch.Tensor,
        tags: torch.Tensor,
        rgb: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        check_probs(logits, "logits")
        b, k, h, w = logits.shape
        if k != self.num_classes:
            raise ValueError(
                f"expected logits (B, K, h, w) with K = num_classes = {self.num_classes}, "
                f"got {tuple(logits.shape)}"
            )
        if not isinstance(seeds, torch.Tensor) or seeds.ndim != 3 or seeds.shape[0] != b:
            got = tuple(seeds.shape) if isinstance(seeds, torch.Tensor) else type(seeds).__name__
            raise ValueError(f"expected seeds (B, H, W) with B = {b}, got {got}")
        if seeds.dtype == torch.bool or seeds.is_floating_point() or seeds.is_complex():
            raise TypeError(f"expected seeds to be an integer tensor (int64), got {seeds.dtype}")
        if seeds.device != logits.device:
            raise ValueError(f"seeds are on {seeds.device} but logits on {logits.device}")
        # rgb (B, 3, H, W) and valid (B, H, W) must match the seeds' (B, H, W): checked against
        # a stand-in for full-resolution probabilities
        stand_in = logits.new_zeros(()).expand(b, 2, *seeds.shape[1:])  # (B, 2, H, W)
        if valid is None:
            valid = seeds != PAD_LABEL
        valid = check_image_valid(stand_in, rgb, valid)
        seeds, rgb, valid = _to_logit_grid(seeds, rgb, valid, (h, w))
        probs = torch.softmax(logits.float(), dim=1)  # (B, K, h, w)
        seed = seeding_loss(probs, seeds, ignore_index=IGNORE_LABEL, pad_index=PAD_LABEL)
        expand = expansion_loss(
            probs, tags, background_index=self.background_index,
            fg_decay=self.fg_decay, bg_decay=self.bg_decay, valid=valid,
        )
        if self.constrain_weight > 0:
            constrain = constrain_loss(
                probs, rgb, valid=valid, crf_kwargs=self.crf_params.as_dict()
            )
        else:
            constrain = probs.sum() * 0.0  # skip the CRF; zero, attached to the graph
        return {
            "seed": self.seed_weight * seed,
            "expand": self.expand_weight * expand,
            "constrain": self.constrain_weight * constrain,
        }

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, background_index={self.background_index}, "
            f"weights=({self.seed_weight}, {self.expand_weight}, {self.constrain_weight}), "
            f"fg_decay={self.fg_decay}, bg_decay={self.bg_decay}"
        )


def _to_logit_grid(
    seeds: torch.Tensor, rgb: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """seeds (B, H, W), rgb (B, 3, H, W), valid (B, H, W) -> the same at `size` (h, w).

    Seeds by nearest-exact (cell centres, labels never blended), unseeded (255) where the
    small valid mask is False; valid where the whole area cell is valid; rgb by area average
    (float32, 0-255).
    """
    if tuple(seeds.shape[1:]) != size:
        # float32 holds every label exactly; nearest-exact samples the cell centres
        seeds = F.interpolate(seeds[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()
        cover = F.interpolate(valid[:, None].float(), size=size, mode="area")[:, 0]  # (B, h, w)
        valid = cover > 1.0 - 1e-6  # the whole cell is valid
        rgb = F.interpolate(rgb.float(), size=size, mode="area")  # (B, 3, h, w)
    return torch.where(valid, seeds.long(), IGNORE_LABEL), rgb.float(), valid


def _check_tags(tags: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """tags (B, K) float multi-hot or bool -> (B, K) bool on probs' device."""
    b, k = probs.shape[:2]
    if not isinstance(tags, torch.Tensor):
        raise TypeError(f"tags must be a torch.Tensor, got {type(tags).__name__}")
    if tuple(tags.shape) != (b, k):
        raise ValueError(
            f"expected tags (B, K) = {(b, k)} to match probs {tuple(probs.shape)}, "
            f"got {tuple(tags.shape)}"
        )
    if tags.device != probs.device:
        raise ValueError(f"tags are on {tags.device} but probs on {probs.device}")
    if tags.dtype == torch.bool:
        return tags
    if not tags.is_floating_point():
        raise TypeError(f"expected tags as a float multi-hot (B, K) or bool, got {tags.dtype}")
    return tags > 0.5


def _check_background(background_index: object, k: int) -> int | None:
    if background_index is None:
        return None
    if isinstance(background_index, bool) or not isinstance(background_index, numbers.Integral):
        raise TypeError(
            f"background_index must be an int or None, got {type(background_index).__name__}"
        )
    if not 0 <= background_index < k:
        raise ValueError(f"background_index must be in [0, {k}) or None, got {background_index}")
    return int(background_index)


def _crf_params(crf_kwargs: Mapping[str, Any] | None) -> CRFParams:
    """SEC_CRF_PARAMS with `crf_kwargs` on top, checked by name and value."""
    if crf_kwargs is None:
        return SEC_CRF_PARAMS
    if not isinstance(crf_kwargs, Mapping):
        raise TypeError(
            f"crf_kwargs must be a mapping of dense_crf settings, got {type(crf_kwargs).__name__}"
        )
    return CRFParams.from_dict({**SEC_CRF_PARAMS.as_dict(), **crf_kwargs})
