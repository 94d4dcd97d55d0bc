"""Draw label maps: blended over the image, with a legend of the classes present.

Colours come from the model card's palette, else `wsdeploy.data.palette.class_palette` (VOC's
colour map; black only for a background class). `colourise` (wsdeploy.data.palette) is the one
function that colours a label map; this module composes it.

    canvas = overlay_with_legend(image, labels, palette, classes)   # (H, W + legend, 3) uint8 RGB
"""
from __future__ import annotations

import cv2
import numpy as np

from wsdeploy.data.palette import class_palette, colourise
from wsdeploy.data.palette import palette as default_palette

__all__ = ["class_palette", "default_palette", "legend_panel", "overlay", "overlay_with_legend"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured labels over an RGB uint8 (H, W, 3) image; returns (H, W, 3) uint8."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colourise(labels, palette)
    return blended.round().astype(np.uint8)


def legend_panel(
    classes: list[str], palette: np.ndarray, counts: np.ndarray, *, height: int, min_fraction: float = 0.0
) -> np.ndarray:
    """A white (height', W, 3) uint8 RGB panel: one swatch + 'name  12%' row per class present.

    Args:
        classes: the K class names.
        palette: (K, 3) uint8 RGB.
        counts: (K,) pixels per class; classes with a share <= min_fraction are left out.
        height: the panel is at least this tall (the image's height); taller if the rows need it.
    """
    total = max(int(counts.sum()), 1)
    rows = [(k, counts[k] / total) for k in np.argsort(-counts) if counts[k] / total > min_fraction and counts[k] > 0]
    row_h = int(np.clip(height // max(len(rows), 1), 12, 22))
    scale = row_h / 30.0
    texts = [f"{classes[k]}  {100 * share:.0f}%" if share >= 0.005 else f"{classes[k]}  <1%" for k, share in rows]
    text_w = max((cv2.getTextSize(t, _FONT, scale, 1)[0][0] for t in texts), default=0)
    width = row_h + 12 + text_w + 6
    panel = np.full((max(height, row_h * len(rows) + 4), width, 3), 255, np.uint8)
    for i, ((k, _), text) in enumerate(zip(rows, texts)):
        top = 2 + i * row_h
        swatch = tuple(int(c) for c in palette[k])
        cv2.rectangle(panel, (4, top + 2), (4 + row_h - 4, top + row_h - 2), swatch, thickness=-1)
        cv2.rectangle(panel, (4, top + 2), (4 + row_h - 4, top + row_h - 2), (96, 96, 96), thickness=1)
        cv2.putText(panel, text, (row_h + 8, top + int(row_h * 0.75)), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def overlay_with_legend(
    image: np.ndarray, labels: np.ndarray, palette: np.ndarray, classes: list[str], *, alpha: float = 0.5
) -> np.ndarray:
    """`overlay` with `legend_panel` to its right: (max(H, legend), W + legend width, 3) uint8 RGB.

    The overlay keeps the image's pixel grid (top-left), so its pixels still line up with the mask.
    """
    blended = overlay(image, labels, palette, alpha=alpha)
    valid = labels[labels != 255].astype(np.int64)
    counts = np.bincount(valid, minlength=len(classes))[: len(classes)]
    panel = legend_panel(classes, palette, counts, height=blended.shape[0])
    canvas = np.full((max(blended.shape[0], panel.shape[0]), blended.shape[1] + panel.shape[1], 3), 255, np.uint8)
    canvas[: blended.shape[0], : blended.shape[1]] = blended
    canvas[: panel.shape[0], blended.shape[1]:] = panel
    return canvas
