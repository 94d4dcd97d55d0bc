"""Evaluate a model file on a dataset split with the runtime's own post-processing.

    from wsdeploy.evaluation import evaluate
    result = evaluate("model.onnx", "data/camvid", split="val")   # any file wsdeploy.load reads
    result.miou, result.per_class_iou, result.confusion            # confusion: (K, K) int64, rows = truth

Every image goes through `wsdeploy.load(...).segment(image)` (decode, normalise, pad, upsample,
crop, argmax, optional dense CRF), so the number is what a deployed model scores, whatever the
backend. Pixels labelled 255 in the masks are ignored.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from wsdeploy.metrics import SegmentationMetric

__all__ = ["EvalResult", "confusion_image", "evaluate"]


@dataclasses.dataclass
class EvalResult:
    """mIoU and friends of one model on one split.

    Attributes:
        classes: the K class names (the model's, equal to the dataset's).
        confusion: (K, K) int64 pixel counts, row = true class, column = predicted.
        miou: mean IoU over classes present in target or prediction.
        per_class_iou: class name -> IoU (None when the class is in neither).
        pixel_accuracy, mean_accuracy: as `SegmentationMetric`.
        images: how many images were scored; seconds: wall time, segment() included.
    """

    classes: list[str]
    confusion: np.ndarray
    miou: float
    per_class_iou: dict[str, float | None]
    pixel_accuracy: float
    mean_accuracy: float
    images: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy, "mean_accuracy": self.mean_accuracy,
                "per_class_iou": self.per_class_iou, "images": self.images, "seconds": round(self.seconds, 2),
                "classes": self.classes, "confusion_matrix": self.confusion.tolist()}


def evaluate(
    model: Any,
    data: str | os.PathLike,
    *,
    split: str | None = "val",
    device: str = "auto",
    crf: bool = False,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Score `model` (a path for `wsdeploy.load`, or a loaded `Segmenter`) on a split's masks.

    Args:
        model: model file (.pt, .onnx, .pt2, .engine) or a `Segmenter`.
        data: a dataset folder with `masks/` (folder layout or VOC).
        split: the split to score (default 'val'); None for every image.
        device, crf: as `wsdeploy.load` (ignored for a `Segmenter`).
        limit: score only the first N images of the split.
        progress: called as progress(done, total) after each image.

    Raises:
        ValueError: no masks, class names that differ between the model and the dataset.
    """
    import wsdeploy
    from wsdeploy.data.datasets import SegmentationDataset

    segmenter = wsdeploy.load(model, device=device, crf=crf) if isinstance(model, (str, os.PathLike)) else model
    dataset = SegmentationDataset(data, split=split, labels="masks")
    if list(dataset.classes) != list(segmenter.classes):
        raise ValueError(f"the model's classes {segmenter.classes} differ from the dataset's {list(dataset.classes)} "
                         f"({data}/classes.txt); evaluate a model trained on this dataset")
    total = len(dataset) if limit is None else min(limit, len(dataset))
    if total < 1:
        raise ValueError(f"no image to evaluate in {data} (split {split!r})")
    metric = SegmentationMetric(len(segmenter.classes), class_names=segmenter.classes)
    start = time.perf_counter()
    for i in range(total):
        item = dataset[i]
        metric.update(segmenter.segment(item["image"]).labels, item["label"])
        if progress is not None:
            progress(i + 1, total)
    iou = metric.per_class_iou()
    return EvalResult(
        classes=list(segmenter.classes), confusion=metric.confusion_matrix, miou=metric.miou(),
        per_class_iou={c: None if np.isnan(v) else float(v) for c, v in zip(segmenter.classes, iou)},
        pixel_accuracy=metric.pixel_accuracy(), mean_accuracy=metric.mean_accuracy(), images=total,
        seconds=time.perf_counter() - start,
    )


def confusion_image(confusion: np.ndarray, classes: list[str], *, cell: int = 36) -> np.ndarray:
    """The row-normalised confusion matrix as an RGB uint8 image: white (0) to dark blue (1) per
    cell, the percentage written in it, true classes down the left, predictions along the top."""
    k = len(classes)
    rows = confusion.sum(1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape, np.float64), where=rows > 0)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, cell / 90.0
    label_w = max(cv2.getTextSize(c, font, scale, 1)[0][0] for c in classes) + 10
    top = label_w + 24  # predicted names, written vertically
    canvas = np.full((top + k * cell + 8, label_w + k * cell + 8, 3), 255, np.uint8)
    cv2.putText(canvas, "predicted ->", (label_w, 16), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    for j, name in enumerate(classes):
        text = np.full((cell, label_w, 3), 255, np.uint8)
        cv2.putText(text, name, (4, int(cell * 0.65)), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        canvas[24:24 + label_w, label_w + j * cell:label_w + (j + 1) * cell] = np.rot90(text)
    for i, name in enumerate(classes):
        y = top + i * cell
        cv2.putText(canvas, name, (4, y + int(cell * 0.65)), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(k):
            v = float(share[i, j])
            colour = tuple(int(255 - v * (255 - c)) for c in (8, 48, 107))  # white -> dark blue
            x = label_w + j * cell
            cv2.rectangle(canvas, (x, y), (x + cell - 1, y + cell - 1), colour, -1)
            cv2.rectangle(canvas, (x, y), (x + cell - 1, y + cell - 1), (200, 200, 200), 1)
            if v >= 0.005:
                ink = (255, 255, 255) if v > 0.5 else (0, 0, 0)
                cv2.putText(canvas, f"{100 * v:.0f}", (x + 4, y + int(cell * 0.65)), font, scale, ink, 1, cv2.LINE_AA)
    return canvas
