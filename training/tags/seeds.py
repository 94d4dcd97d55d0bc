"""Seeds from CAMs: dense CAM labels, confident seeds with an ignore band, CRF-checked seeds,
and their evaluation against dense masks (a threshold sweep on one split).

Longer than the house's ~400 lines on purpose: the seed rules, the statistics and the sweep
share one convention (dataset class indices, the ignore band), which reads best in one file.

    from wsdeploy.training.tags.seeds import make_seeds, sweep_thresholds, pick_threshold

    seeds = make_seeds(cams, classes, num_classes=21, background_index=0,
                       fg_threshold=0.30, bg_threshold=0.05)      # (H, W) uint8, 255 = unlabelled
    rows = sweep_thresholds("cams/", data_with_masks, fg_thresholds=[0.2, 0.3], bg_thresholds=[0.05])
    best = pick_threshold(rows)                                   # by seed mIoU, convention (b)

Inputs everywhere: `cams` (T, H, W) float in [0, 1], one normalised CAM per tagged class
(`wsdeploy.training.tags.cam`), and `class_indices` (T,) their dataset class indices. Every label
map is in dataset class indices, 255 = no label. m = max over the T maps (0 where T = 0) and
c* = the class of the largest map (first one on ties).

Two pseudo-mask mIoU conventions (`SeedStats`): (a) "ignored": unlabelled seed pixels are left
out; (b) "as_background": unlabelled seed pixels count as background (without a background
class, as an extra "none" prediction that is wrong for every class). Pixels whose mask is 255
are never counted.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from wsdeploy.training.tags.cam import CamSource, cam_lookup
from wsdeploy.training.tags.targets import dataset_background_index

from wsdeploy.crf import CRFParams, dense_crf
from wsdeploy.metrics import SegmentationMetric, confusion_matrix
from wsdeploy.data.labels import IGNORE_LABEL

__all__ = [
    "BG_MODES",
    "SeedStats",
    "cams_to_labels",
    "make_seeds",
    "pick_threshold",
    "refine_seeds_crf",
    "seed_stats",
    "sweep_thresholds",
]

BG_MODES = ("constant", "power")
_EPS = 1e-5


def _check_cams(cams: Any, class_indices: Any, num_classes: int, bg: int | None) -> tuple[np.ndarray, np.ndarray]:
    cams = np.asarray(cams, dtype=np.float32)
    classes = np.asarray(class_indices).astype(np.int64)
    if cams.ndim != 3 or classes.shape != (cams.shape[0],):
        raise ValueError(f"expected cams (T, H, W) and class_indices (T,), got {cams.shape} and {classes.shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be an int in 1..255, got {num_classes!r}")
    if bg is not None and not 0 <= bg < num_classes:
        raise ValueError(f"background_index must be None or in 0..{num_classes - 1}, got {bg!r}")
    bad = [int(c) for c in classes if not 0 <= c < num_classes or c == bg]
    if bad:
        raise ValueError(f"class_indices {bad} are not foreground classes (0..{num_classes - 1}, background {bg})")
    return cams, classes


def _top(cams: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """m (H, W) float32 = max CAM (0 if T = 0), c* (H, W) uint8 = its class (255 if T = 0)."""
    if cams.shape[0] == 0:
        return np.zeros(cams.shape[1:], np.float32), np.full(cams.shape[1:], IGNORE_LABEL, np.uint8)
    arg = cams.argmax(0)  # (H, W)
    return np.take_along_axis(cams, arg[None], 0)[0], classes.astype(np.uint8)[arg]


def cams_to_labels(
    cams: np.ndarray,
    class_indices: np.ndarray,
    *,
    num_classes: int,
    background_index: int | None,
    threshold: float | None = None,
    bg_mode: str = "constant",
    alpha: float = 1.0,
) -> np.ndarray:
    """Dense label map: the argmax over the tagged CAMs and, with a background class, a
    background score.

    With a background class, a pixel is background when its background score beats every
    tagged CAM (ties go to the CAM): the score is `threshold` (bg_mode "constant") or
    (1 - m)^alpha ("power", the score of PSA / AffinityNet). Without one, every pixel takes
    c* (`threshold` is unused); with no tag either, every pixel is 255.

    Args:
        cams: (T, H, W) float in [0, 1]; class_indices: (T,) dataset class indices.
        num_classes: K, the dataset's classes; background_index: its background or None.
        threshold: the constant background score (needed for "constant" with a background).
        bg_mode: "constant" or "power".
        alpha: the exponent of "power" (> 0).

    Returns:
        (H, W) uint8 class indices (255 only without background and without tags).
    """
    cams, classes = _check_cams(cams, class_indices, num_classes, background_index)
    if bg_mode not in BG_MODES:
        raise ValueError(f"bg_mode must be one of {BG_MODES}, got {bg_mode!r}")
    peak, label = _top(cams, classes)
    if background_index is None:
        return label
    if bg_mode == "constant":
        if threshold is None:
            raise ValueError("bg_mode='constant' with a background class needs a threshold")
        bg_score = np.float32(threshold)
    else:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        bg_score = np.power(np.clip(1.0 - peak, 0.0, 1.0), alpha)
    return _dense_from_top(peak, label, bg_score, background_index)


def _dense_from_top(peak: np.ndarray, label: np.ndarray, bg_score: Any, background_index: int) -> np.ndarray:
    """Background where its score beats the best CAM, or where there is no tag."""
    is_bg = (bg_score > peak) | (label == IGNORE_LABEL)
    return np.where(is_bg, np.uint8(background_index), label).astype(np.uint8)


def _check_thresholds(fg: float, bg_thr: float | None, background_index: int | None) -> None:
    if not (isinstance(fg, (int, float)) and math.isfinite(fg)):
        raise ValueError(f"fg_threshold must be a finite number, got {fg!r}")
    if bg_thr is None:
        return
    if background_index is None:
        raise ValueError(
            f"bg_threshold={bg_thr!r} given but the dataset has no background class; every pixel "
            "seed is a tagged class (leave bg_threshold out)"
        )
    if not (isinstance(bg_thr, (int, float)) and math.isfinite(bg_thr)) or bg_thr > fg:
        raise ValueError(f"bg_threshold must be a number <= fg_threshold ({fg}), got {bg_thr!r}")


def _seeds_from_top(
    peak: np.ndarray, label: np.ndarray, fg: float, bg_thr: float | None, background_index: int | None
) -> np.ndarray:
    seeds = np.full(peak.shape, IGNORE_LABEL, np.uint8)
    if bg_thr is not None:
        seeds[peak <= bg_thr] = background_index
    fg_mask = (peak >= fg) & (label != IGNORE_LABEL)  # label is 255 only without tags
    seeds[fg_mask] = label[fg_mask]  # fg wins ties when bg_threshold == fg_threshold
    return seeds


def make_seeds(
    cams: np.ndarray,
    class_indices: np.ndarray,
    *,
    num_classes: int,
    background_index: int | None,
    fg_threshold: float,
    bg_threshold: float | None = None,
) -> np.ndarray:
    """Confident seeds with an ignore band.

    Rule: c* where m >= fg_threshold; background where m <= bg_threshold (only with a
    background class); 255 elsewhere. An image without tags has m = 0: all background when
    bg_threshold >= 0, else all 255.

    IRN's seeds (Ahn et al. 2019, `cam_to_ir_label`, before its CRF) pad the CAMs with a
    constant background score, 0.30 for the foreground map and 0.05 for the background map,
    and take the argmax: that is this rule with fg_threshold=0.30, bg_threshold=0.05 (up to
    ties at exactly the threshold, which numpy's argmax gives to the background). A "power"
    background score (1 - m)^alpha is equivalent to a constant threshold on m: (1 - m)^alpha - m
    falls strictly from 1 (m = 0) to -1 (m = 1), so the background wins exactly where m < t,
    t the root of (1 - t)^alpha = t: t = 0.5, 0.382, 0.276, 0.188, 0.123, 0.094, 0.077 for
    alpha = 1, 2, 4, 8, 16, 24, 32 (PSA's alphas are 4 to 32). The decision depends on m only,
    so sweeping `fg_threshold` covers every alpha (not so through a CRF, which sees the scores).

    Args:
        cams: (T, H, W) float in [0, 1]; class_indices: (T,) dataset class indices.
        num_classes: K; background_index: the dataset's background class or None.
        fg_threshold: foreground seeds where m >= it.
        bg_threshold: background seeds where m <= it; <= fg_threshold (equal: no ignore band,
            the same map as `cams_to_labels(threshold=fg_threshold)`); None: no background seed.

    Returns:
        (H, W) uint8, dataset class indices, 255 = no seed.

    Raises:
        ValueError: bg_threshold without a background class, or above fg_threshold.
    """
    cams, classes = _check_cams(cams, class_indices, num_classes, background_index)
    _check_thresholds(fg_threshold, bg_threshold, background_index)
    peak, label = _top(cams, classes)
    return _seeds_from_top(peak, label, fg_threshold, bg_threshold, background_index)


def refine_seeds_crf(
    image: np.ndarray | torch.Tensor,
    cams: np.ndarray | torch.Tensor,
    class_indices: np.ndarray,
    *,
    num_classes: int,
    background_index: int | None,
    fg_threshold: float,
    bg_threshold: float | None = None,
    crf: CRFParams | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Seeds of `make_seeds`, kept only where a dense CRF agrees (IRN-style check).

    What runs, per image:
    1. Foreground map: scores [fg_threshold, cams...] ((1 + T, H, W); without a background
       class just the T cams), plus 1e-5, divided by their sum over the first axis, refined
       by `wsdeploy.crf.dense_crf`; its argmax gives a CRF label per pixel.
    2. With a background class and `bg_threshold`: the same with [bg_threshold, cams...].
    3. A foreground seed c (m >= fg_threshold) is kept where the foreground CRF label is c; a
       background seed (m <= bg_threshold) where the background CRF label is background;
       every other pixel is 255.
    IRN instead takes the CRF labels themselves as seeds (on argmax label maps, not scores);
    here the CRF can only remove seeds, never add any. No tags: the thresholded seeds as is
    (a CRF over one class changes nothing).

    Args:
        image: (H, W, 3) or (B, H, W, 3) uint8 RGB, numpy or torch.
        cams: (T, H, W) or (B, T, H, W) float in [0, 1], numpy or torch (a batch shares
            `class_indices`; images with different tags are refined one by one).
        class_indices: (T,) dataset class indices.
        num_classes, background_index, fg_threshold, bg_threshold: see `make_seeds`.
        crf: CRF settings (`CRFParams()` if None).
        device: where the CRF runs: None = the device of `cams` (CPU for numpy), or "cpu",
            "cuda[:N]".

    Returns:
        (H, W) or (B, H, W) uint8 numpy seeds, 255 = no seed.
    """
    params = CRFParams() if crf is None else crf
    cams_t = _tensor(cams)
    single = cams_t.ndim == 3
    cams_b = (cams_t[None] if single else cams_t).float()  # (B, T, H, W)
    if device is not None:
        cams_b = cams_b.to(device)
    image_t = _tensor(image)
    image_b = image_t[None] if image_t.ndim == 3 else image_t  # (B, H, W, 3)
    if cams_b.ndim != 4 or tuple(image_b.shape) != (cams_b.shape[0], *cams_b.shape[2:], 3):
        raise ValueError(
            f"expected image (H, W, 3) with cams (T, H, W), or (B, H, W, 3) with (B, T, H, W); got "
            f"{tuple(image_t.shape)} and {tuple(cams_t.shape)}"
        )
    cams_np = cams_b.cpu().numpy()
    seeds = np.stack([
        make_seeds(c, class_indices, num_classes=num_classes, background_index=background_index,
                   fg_threshold=fg_threshold, bg_threshold=bg_threshold)
        for c in cams_np
    ])  # (B, H, W)
    classes = np.asarray(class_indices).astype(np.int64)
    if classes.size == 0:
        return seeds[0] if single else seeds
    image_b = image_b.to(cams_b.device)
    crf_args = params.as_dict()
    has_bg = background_index is not None
    fg_crf = _crf_labels(image_b, cams_b, fg_threshold if has_bg else None, crf_args)  # (B, H, W) channels
    keep = (seeds != IGNORE_LABEL) & (_as_dataset(fg_crf, classes, background_index) == seeds)
    if has_bg:
        keep &= seeds != background_index  # background seeds are checked by the background map
    if has_bg and bg_threshold is not None:
        bg_crf = _crf_labels(image_b, cams_b, bg_threshold, crf_args)
        keep |= (seeds == background_index) & (bg_crf == 0)
    out = np.where(keep, seeds, IGNORE_LABEL).astype(np.uint8)
    return out[0] if single else out


def _tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def _crf_labels(image: torch.Tensor, cams: torch.Tensor, bg_score: float | None, crf_args: dict[str, Any]) -> np.ndarray:
    """CRF argmax over [bg_score, cams] (or cams): (B, H, W) int64 channel indices."""
    scores = cams
    if bg_score is not None:
        scores = torch.cat([torch.full_like(cams[:, :1], float(bg_score)), cams], dim=1)  # (B, 1+T, H, W)
    scores = scores.clamp_min(0) + _EPS
    probs = scores / scores.sum(1, keepdim=True)
    return dense_crf(image, probs, **crf_args).argmax(1).cpu().numpy()


def _as_dataset(channel: np.ndarray, classes: np.ndarray, background_index: int | None) -> np.ndarray:
    """Channel indices of `_crf_labels` -> dataset class indices (channel 0 = background)."""
    table = classes if background_index is None else np.concatenate([[background_index], classes])
    return table.astype(np.uint8)[channel]


@dataclasses.dataclass
class SeedStats:
    """Counts of seeds against dense masks; add two to accumulate over images.

    Attributes:
        num_classes: K; background_index: the background class or None.
        confusion_ignored: (K, K) int64, [mask, seed] over pixels with a seed and a mask label.
        confusion_as_background: over every pixel with a mask label, unlabelled seeds counted as
            the background class: (K, K) int64; without a background class (K + 1, K + 1),
            column K = "none" (row K stays 0).
    """

    num_classes: int
    background_index: int | None
    confusion_ignored: np.ndarray
    confusion_as_background: np.ndarray

    def __add__(self, other: SeedStats) -> SeedStats:
        if (self.num_classes, self.background_index) != (other.num_classes, other.background_index):
            raise ValueError("cannot add SeedStats of different classes / background")
        return SeedStats(self.num_classes, self.background_index,
                         self.confusion_ignored + other.confusion_ignored,
                         self.confusion_as_background + other.confusion_as_background)

    @property
    def precision(self) -> float:
        """Seeded pixels (with a mask label) whose seed equals the mask; NaN if none."""
        seeded = self.confusion_ignored.sum()
        return float(np.trace(self.confusion_ignored) / seeded) if seeded else math.nan

    @property
    def coverage(self) -> float:
        """Pixels with a mask label that have a seed; NaN if none."""
        valid = self.confusion_as_background.sum()
        return float(self.confusion_ignored.sum() / valid) if valid else math.nan

    @property
    def miou_ignored(self) -> float:
        """mIoU, convention (a): unlabelled seed pixels left out."""
        return _miou(self.confusion_ignored, self.num_classes)

    @property
    def miou_as_background(self) -> float:
        """mIoU, convention (b): unlabelled seed pixels as background (or "none")."""
        return _miou(self.confusion_as_background, self.num_classes)

    def to_dict(self) -> dict[str, float | None]:
        """precision, coverage, miou_ignored, miou_as_background; NaN -> None."""
        values = {"miou_as_background": self.miou_as_background, "miou_ignored": self.miou_ignored,
                  "precision": self.precision, "coverage": self.coverage}
        return {k: None if math.isnan(v) else v for k, v in values.items()}


def _miou(matrix: np.ndarray, num_classes: int) -> float:
    """mIoU over the first K classes (a "none" column lowers IoUs but is not a class)."""
    metric = SegmentationMetric(matrix.shape[0])
    metric.add_confusion_matrix(matrix)
    iou = metric.per_class_iou()[:num_classes]
    iou = iou[~np.isnan(iou)]
    return float(iou.mean()) if iou.size else math.nan


def seed_stats(seeds: np.ndarray, mask: np.ndarray, num_classes: int, *, background_index: int | None) -> SeedStats:
    """Compare seeds with a dense mask.

    Args:
        seeds: (H, W) uint8 class indices, 255 = no seed.
        mask: (H, W) uint8 class indices, 255 = ignore (never counted).
        num_classes: K.
        background_index: the background class (convention (b) counts unlabelled seeds as it),
            or None (they count as "none", wrong for every class).

    Returns:
        `SeedStats`; sum them over images, then read `precision`, `coverage`, `miou_*`.
    """
    seeds = np.asarray(seeds)
    mask = np.asarray(mask)
    if seeds.shape != mask.shape or seeds.ndim != 2:
        raise ValueError(f"expected seeds and mask of the same (H, W) shape, got {seeds.shape} and {mask.shape}")
    bad = np.unique(seeds[(seeds >= num_classes) & (seeds != IGNORE_LABEL)])
    if bad.size:
        raise ValueError(f"seed values {bad[:10].tolist()} are neither classes 0..{num_classes - 1} nor 255")
    unseeded = seeds == IGNORE_LABEL
    ignored = confusion_matrix(np.where(unseeded, 0, seeds), np.where(unseeded, IGNORE_LABEL, mask), num_classes)
    if background_index is None:
        as_bg = confusion_matrix(np.where(unseeded, num_classes, seeds), mask, num_classes + 1)
    else:
        as_bg = confusion_matrix(np.where(unseeded, background_index, seeds), mask, num_classes)
    return SeedStats(num_classes, background_index, ignored, as_bg)


def sweep_thresholds(
    cam_source: CamSource,
    dataset: Any,
    *,
    fg_thresholds: Sequence[float],
    bg_thresholds: Sequence[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Seed quality for every threshold setting on the images of one split.

    Only `dataset`'s images are read (its split), one CAM per image from `cam_source`.

    Args:
        cam_source: a CAM folder, a mapping id -> (cams, class_indices), or such a function
            (see `wsdeploy.training.tags.cam.cam_lookup`).
        dataset: a `SegmentationDataset` with `labels="masks"` (items with "id" and "label").
        fg_thresholds: foreground thresholds to try.
        bg_thresholds: with a background class, background thresholds to try (pairs with
            bg > fg are skipped); None = bg equal to fg (no ignore band). Without a background
            class it must be None or empty.
        progress: called as `progress(done, total)` after every image.

    Returns:
        one row per (fg, bg) setting: {"fg_threshold", "bg_threshold" (None without
        background), "miou_as_background", "miou_ignored", "precision", "coverage",
        "cam_miou" (the dense `cams_to_labels` map at threshold = fg; without background the
        same argmax map for every row), "images"}; NaN as None.
    """
    if getattr(dataset, "labels", "masks") != "masks":
        raise ValueError("sweep_thresholds needs a dataset with dense masks (labels='masks')")
    fgs = [float(t) for t in fg_thresholds]
    if not fgs:
        raise ValueError("fg_thresholds is empty")
    bg = dataset_background_index(dataset)
    k = len(dataset.classes)
    if bg is None:
        if bg_thresholds:
            raise ValueError(f"bg_thresholds {list(bg_thresholds)} given but the dataset has no background class")
        settings: list[tuple[float, float | None]] = [(fg, None) for fg in fgs]
    elif bg_thresholds is None:
        settings = [(fg, fg) for fg in fgs]
    else:
        settings = [(fg, float(b)) for fg in fgs for b in bg_thresholds if float(b) <= fg]
        if not settings:
            raise ValueError(f"every bg threshold {list(bg_thresholds)} is above every fg threshold {fgs}")
    for fg, b in settings:
        _check_thresholds(fg, b, bg)
    lookup = cam_lookup(cam_source, dataset)
    empty = seed_stats(np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.uint8), k, background_index=bg)
    seed_totals = {s: empty for s in settings}
    cam_keys = fgs if bg is not None else [None]
    cam_totals = {t: empty for t in cam_keys}
    for done in range(1, len(dataset) + 1):
        item = dataset[done - 1]
        mask = item["label"]
        cams, classes = lookup(item["id"])
        if cams.shape[1:] != mask.shape:
            raise ValueError(f"image {item['id']!r}: CAMs are {cams.shape[1:]} but the mask is {mask.shape}")
        cams, classes = _check_cams(cams, classes, k, bg)
        peak, label = _top(cams, classes)
        for fg, b in settings:
            seeds = _seeds_from_top(peak, label, fg, b, bg)
            seed_totals[(fg, b)] += seed_stats(seeds, mask, k, background_index=bg)
        for t in cam_keys:
            dense = label if bg is None else _dense_from_top(peak, label, np.float32(t), bg)
            cam_totals[t] += seed_stats(dense, mask, k, background_index=bg)
        if progress is not None:
            progress(done, len(dataset))
    rows = []
    for fg, b in settings:
        cam = cam_totals[fg if bg is not None else None].miou_as_background
        rows.append({"fg_threshold": fg, "bg_threshold": b, **seed_totals[(fg, b)].to_dict(),
                     "cam_miou": None if math.isnan(cam) else cam, "images": len(dataset)})
    return rows


def pick_threshold(rows: Sequence[dict[str, Any]], key: str = "miou_as_background") -> dict[str, Any]:
    """The row of `sweep_thresholds` with the largest `key` (rows where it is None skipped).

    Raises:
        ValueError: no rows, an unknown key, or no row with a value.
    """
    if not rows:
        raise ValueError("no sweep rows to pick from")
    if key not in rows[0]:
        raise ValueError(f"unknown key {key!r}; rows have {sorted(rows[0])}")
    scored = [r for r in rows if r[key] is not None]
    if not scored:
        raise ValueError(f"no row has a value for {key!r} (no labelled pixel?)")
    return max(scored, key=lambda r: r[key])
