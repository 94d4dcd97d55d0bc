"""Procedural textures for the synthetic benchmark.

Every texture is a function ``(rng, h, w, *, scale) -> (h, w) float32`` pattern, roughly zero
mean and within [-1, 1]; ``scale`` is the image size / 256, so patterns keep their look at any
resolution. A region is painted by mixing its two colours with the pattern (see
``scene``). The textures differ in frequency content and orientation, which is what a
network must pick up, since colours are shared by all classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["smooth_noise", "TEXTURES", "Texture"]

Texture = Callable[..., np.ndarray]


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Band-limited Gaussian noise: a random grid of about ``cells`` cells across the longer
    side, upsampled bicubically. Returns (h, w) float32 with unit standard deviation."""
    gy = max(2, int(round(cells * h / max(h, w))) + 2)
    gx = max(2, int(round(cells * w / max(h, w))) + 2)
    grid = rng.standard_normal((gy, gx)).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return _standardise(field)


def _standardise(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    return ((x - x.mean()) / (std if std > 1e-6 else 1.0)).astype(np.float32)


def _coords(h: int, w: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by ``angle`` (radians): u along the direction, v across it."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    return x * c + y * s, -x * s + y * c


def _streaks(rng: np.random.Generator, h: int, w: int, angle: float, length: float, gap: float) -> np.ndarray:
    """Noise stretched along ``angle``: thin streaks ``length`` long and ``gap`` apart (pixels)."""
    diag = int(math.ceil(math.hypot(h, w))) + 2
    small = rng.standard_normal((max(2, int(diag / length)), max(2, int(diag / gap)))).astype(np.float32)
    big = cv2.resize(small, (diag, diag), interpolation=cv2.INTER_LINEAR)  # streaks run along rows' axis 0
    # rotate the vertical streaks to direction (cos angle, sin angle) in image coordinates
    # (y down; cv2 maps source direction (0, 1) to (sin d, cos d)), then crop the centre
    rot = cv2.getRotationMatrix2D((diag / 2, diag / 2), 90.0 - math.degrees(angle), 1.0)
    rot[0, 2] -= (diag - w) / 2
    rot[1, 2] -= (diag - h) / 2
    return cv2.warpAffine(big, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def smooth(rng: np.random.Generator, h: int, w: int, *, scale: float) -> np.ndarray:
    """Sky / star: soft clouds, only low frequencies."""
    clouds = np.maximum(smooth_noise(rng, h, w, 3.0 * max(h, w) / (256 * scale)) - 0.3, 0.0)
    gradient = smooth_noise(rng, h, w, 1.0)
    return np.clip(0.5 * gradient + 0.8 * clouds - 0.3, -1.0, 1.0).astype(np.float32)


def blades(rng: np.random.Generator, h: int, w: int, *, scale: float) -> np.ndarray:
    """Grass / ring: fine streaks a few pixels apart, near-vertical with a random lean."""
    angle = math.pi / 2 + rng.uniform(-0.35, 0.35)
    s = _streaks(rng, h, w, angle, length=rng.uniform(10, 18) * scale, gap=rng.uniform(2.2, 3.2) * scale)
    return np.clip(0.7 * s, -1.0, 1.0).astype(np.float32)


def grain(rng: np.random.Generator, h: int, w: int, *, scale: float) -> np.ndarray:
    """Sand / ball: isotropic fine speckle plus faint ripples."""
    speckle = rng.standard_normal((h, w)).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (0, 0), 0.6 * scale + 0.2)
    speckle = _standardise(speckle)
    u, v = _coords(h, w, rng.uniform(0, math.pi))
    period = rng.uniform(14, 24) * scale
    warp = 3.0 * smooth_noise(rng, h, w, 3.0)
    ripples = np.sin(2 * math.pi * (v + warp) / period)
    return np.clip(0.6 * speckle + 0.25 * ripples, -1.0, 1.0).astype(np.float32)


def waves(rng: np.random.Generator, h: int, w: int, *, scale: float) -> np.ndarray:
    """Water: warped parallel bands, near-horizontal, medium frequency, sharp crests."""
    u, v = _coords(h, w, rng.uniform(-0.3, 0.3))
    period = rng.uniform(7, 12) * scale
    warp = rng.uniform(2.0, 5.0) * scale * smooth_noise(rng, h, w, 4.0)
    phase = 2 * math.pi * (v + warp) / period + 0.4 * np.sin(2 * math.pi * u / (period * 5))
    bands = np.sin(phase)
    return np.clip(np.sign(bands) * np.abs(bands) ** 0.5 * 0.8, -1.0, 1.0).astype(np.float32)


def planks(rng: np.random.Generator, h: int, w: int, *, scale: float, angle: float = 0.0) -> np.ndarray:
    """Crate: straight planks along ``angle`` with dark seams and a faint wood grain."""
    u, v = _coords(h, w, angle)
    period = rng.uniform(8, 14) * scale
    frac = np.mod(v / period, 1.0)
    seams = np.where(frac < 0.15, -1.0, 0.35)
    wood = _streaks(rng, h, w, angle, length=30 * scale, gap=2.5 * scale)
    return np.clip(seams + 0.25 * wood, -1.0, 1.0).astype(np.float32)


def spots(rng: np.random.Generator, h: int, w: int, *, scale: float) -> np.ndarray:
    """Critter: blotchy high-contrast spots a few pixels across."""
    field = smooth_noise(rng, h, w, max(h, w) / (rng.uniform(5, 8) * scale))
    return np.tanh(3.0 * (field - 0.5)).astype(np.float32)


TEXTURES: dict[str, Texture] = {
    "smooth": smooth,
    "blades": blades,
    "grain": grain,
    "waves": waves,
    "planks": planks,
    "spots": spots,
}
