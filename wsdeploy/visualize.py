"""Colour label maps and blend them over images, for overlays written by the CLI and demo.

The colours come from `wsdeploy.data.palette` (the VOC colour map) unless a model card carries
its own palette.
"""
from __future__ import annotations

import numpy as np

from wsdeploy.data.palette import IGNORE_COLOUR
from wsdeploy.data.palette import palette as default_palette

__all__ = ["colorize", "default_palette", "overlay"]


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """labels (H, W) int -> (H, W, 3) uint8 RGB with `palette` (K, 3); 255 (ignore) gets
    `IGNORE_COLOUR`, other values outside the palette black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: min(len(palette), 256)] = palette[:256]
    lut[255] = IGNORE_COLOUR
    return lut[np.clip(labels, 0, 255).astype(np.intp)]


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured labels over an RGB uint8 (H, W, 3) image; returns (H, W, 3) uint8."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(labels, palette)
    return blended.round().astype(np.uint8)
