"""Colour label maps and blend them over images, for overlays written by the CLI and demo."""
from __future__ import annotations

import numpy as np

__all__ = ["colorize", "default_palette", "overlay"]


def default_palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map: (num_classes, 3) uint8, class 0 black."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for k in range(num_classes):
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[k] = (r, g, b)
    return palette


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """labels (H, W) int -> (H, W, 3) uint8 RGB; 255 (ignore) is drawn white."""
    lut = np.full((256, 3), 255, dtype=np.uint8)
    lut[: len(palette)] = palette[:256]
    return lut[np.clip(labels, 0, 255).astype(np.intp)]


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured labels over an RGB uint8 (H, W, 3) image; returns (H, W, 3) uint8."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(labels, palette)
    return blended.round().astype(np.uint8)
