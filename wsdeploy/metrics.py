"""Segmentation metrics from a confusion matrix accumulated over a dataset.

The state is one (K, K) int64 matrix, rows = target class, columns = predicted class. Every
metric is derived from it, so accumulating batch by batch gives exactly the one-shot result, and
matrices from several processes (DDP) can simply be summed.

Conventions:
- Target pixels equal to an ignore value (255 by default) are not counted, whatever the prediction.
- IoU of class c = TP / (TP + FP + FN). A class with an empty union (absent from both target and
  prediction over everything seen) has IoU NaN and is left out of the mean: `miou` is the mean
  over classes present in the target or the prediction. A class that is predicted but never in
  the target has IoU 0 and does count.
- Mean accuracy is the mean of per-class recall TP / (TP + FN) over classes present in the target.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SegmentationMetric", "confusion_matrix", "mean_iou"]

IgnoreIndex = int | Sequence[int]


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype (class indices), got {x.dtype}")
    return x


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return num_classes


def _ignore_tuple(ignore_index: IgnoreIndex) -> tuple[int, ...]:
    values = (ignore_index,) if isinstance(ignore_index, int) else tuple(ignore_index)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"ignore_index must be an int or a sequence of ints, got {ignore_index!r}")
    return values


def confusion_matrix(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    num_classes: int,
    *,
    ignore_index: IgnoreIndex = 255,
) -> np.ndarray:
    """Confusion matrix of one prediction against its target.

    Args:
        pred: (H, W) or (B, H, W) integer class indices in [0, num_classes); numpy or torch
            (any device).
        target: same shape as `pred`, integer class indices in [0, num_classes) or an ignore value.
        num_classes: K, the number of classes.
        ignore_index: target value(s) not counted (default 255). Several values may be given,
            e.g. `(254, 255)` to skip augmentation padding as well.

    Returns:
        (K, K) int64, entry [t, p] = number of pixels of target class t predicted as p.

    Raises:
        TypeError: an input is not an integer numpy array / torch tensor.
        ValueError: shapes differ or are not 2-D / 3-D; a target value is neither a class nor an
            ignore value; a prediction is outside [0, num_classes).
    """
    k = _check_num_classes(num_classes)
    ignore = _ignore_tuple(ignore_index)
    p = _to_numpy(pred, "pred")
    t = _to_numpy(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: pred {p.shape}, target {t.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (B, H, W) inputs, got shape {p.shape}")
    p = p.ravel().astype(np.int64, copy=False)
    t = t.ravel().astype(np.int64, copy=False)
    if p.size and (p.min() < 0 or p.max() >= k):
        bad = np.unique(p[(p < 0) | (p >= k)])[:10].tolist()
        raise ValueError(f"pred values must be in [0, {k}), got {bad}")
    valid = (t >= 0) & (t < k)
    if not valid.all():
        others = t[~valid]
        unknown = others[~np.isin(others, ignore)]
        if unknown.size:
            bad = np.unique(unknown)[:10].tolist()
            raise ValueError(
                f"target values must be in [0, {k}) or ignore_index {list(ignore)}, got {bad}"
            )
    counts = np.bincount(k * t[valid] + p[valid], minlength=k * k)
    return counts.reshape(k, k).astype(np.int64, copy=False)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


class SegmentationMetric:
    """Confusion-matrix metrics accumulated over batches.

    Args:
        num_classes: K, the number of classes.
        ignore_index: target value(s) not counted (default 255).
        class_names: optional K names, used as keys in `summary()`.

    Example:
        >>> metric = SegmentationMetric(21)
        >>> for pred, target in batches:      # (B, H, W) int each
        ...     metric.update(pred, target)
        >>> metric.miou()
    """

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: IgnoreIndex = 255,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = _ignore_tuple(ignore_index)
        if class_names is not None:
            class_names = [str(n) for n in class_names]
            if len(class_names) != num_classes:
                raise ValueError(
                    f"class_names has {len(class_names)} names, expected num_classes={num_classes}"
                )
        self.class_names = class_names
        self._matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._matrix[:] = 0

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Add one prediction: `pred`, `target` (H, W) or (B, H, W) int; see `confusion_matrix`."""
        self._matrix += confusion_matrix(
            pred, target, self.num_classes, ignore_index=self.ignore_index
        )

    def add_confusion_matrix(self, matrix: np.ndarray | torch.Tensor) -> None:
        """Add a (K, K) integer confusion matrix, e.g. one all-reduced across DDP ranks."""
        m = _to_numpy(matrix, "matrix")
        k = self.num_classes
        if m.shape != (k, k):
            raise ValueError(f"expected a ({k}, {k}) confusion matrix, got shape {m.shape}")
        if (m < 0).any():
            raise ValueError("confusion matrix entries must be >= 0")
        self._matrix += m.astype(np.int64)

    @property
    def confusion_matrix(self) -> np.ndarray:
        """(K, K) int64 copy; entry [t, p] = pixels of target class t predicted as p."""
        return self._matrix.copy()

    @property
    def num_pixels(self) -> int:
        """Number of counted (non-ignored) pixels."""
        return int(self._matrix.sum())

    def per_class_iou(self) -> np.ndarray:
        """(K,) float64 IoU per class; NaN for a class absent from both target and prediction."""
        m = self._matrix.astype(np.float64)
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes with a non-zero union (see module docstring); NaN if empty."""
        return _nanmean(self.per_class_iou())

    def per_class_accuracy(self) -> np.ndarray:
        """(K,) float64 recall TP / (TP + FN) per class; NaN for a class absent from the target."""
        m = self._matrix.astype(np.float64)
        support = m.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(support > 0, np.diag(m) / support, np.nan)

    def mean_accuracy(self) -> float:
        """Mean per-class accuracy over classes present in the target; NaN if empty."""
        return _nanmean(self.per_class_accuracy())

    def pixel_accuracy(self) -> float:
        """Correct pixels / counted pixels; NaN if nothing was counted."""
        total = self._matrix.sum()
        return float(np.trace(self._matrix) / total) if total else math.nan

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary; NaN values (absent classes, no data) become None.

        Returns:
            {"num_classes", "num_pixels", "miou", "pixel_accuracy", "mean_accuracy",
             "per_class_iou": {name: float | None}, "per_class_accuracy": {name: float | None}},
            names from `class_names` or the class index as a string.
        """
        names = self.class_names or [str(i) for i in range(self.num_classes)]

        def scalar(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        return {
            "num_classes": self.num_classes,
            "num_pixels": self.num_pixels,
            "miou": scalar(self.miou()),
            "pixel_accuracy": scalar(self.pixel_accuracy()),
            "mean_accuracy": scalar(self.mean_accuracy()),
            "per_class_iou": dict(zip(names, _nan_to_none(self.per_class_iou()))),
            "per_class_accuracy": dict(zip(names, _nan_to_none(self.per_class_accuracy()))),
        }

    def __repr__(self) -> str:
        return (
            f"SegmentationMetric(num_classes={self.num_classes}, pixels={self.num_pixels}, "
            f"miou={self.miou():.4f})"
        )


def _nanmean(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else math.nan


def mean_iou(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    num_classes: int,
    *,
    ignore_index: IgnoreIndex = 255,
) -> float:
    """Mean IoU of one prediction (or batch) against its target, same convention as the class.

    Args:
        pred: (H, W) or (B, H, W) integer class indices in [0, num_classes).
        target: same shape, class indices or the ignore value(s).
        num_classes: K.
        ignore_index: target value(s) not counted (default 255).

    Returns:
        mean IoU over classes present in target or prediction; NaN if no pixel was counted.
    """
    metric = SegmentationMetric(num_classes, ignore_index=ignore_index)
    metric.update(pred, target)
    return metric.miou()
