"""Shapes of the synthetic benchmark: the stuff layout and one outline per object class.

Every object function draws into a fresh (H, W) uint8 0/1 mask around centre ``(cx, cy)`` with
radius ``r`` (pixels) and returns it with the orientation (radians) its texture should follow.
Objects may reach past the image border; :func:`warp_mask` then bends the outline a little so
no two objects of a class look alike.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from wsdeploy.data.synthetic.textures import smooth_noise

__all__ = ["stuff_layout", "warp_mask", "OBJECT_SHAPES"]

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate outlines
_ONE = 1 << _SHIFT


def _pts(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _rotate(points: np.ndarray, angle: float, cx: float, cy: float) -> np.ndarray:
    """Rotate (N, 2) offsets by ``angle`` and move them to the centre."""
    c, s = math.cos(angle), math.sin(angle)
    x, y = points[:, 0], points[:, 1]
    return np.stack([cx + x * c - y * s, cy + x * s + y * c], axis=1)


def _ellipse(mask: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float, value: int) -> None:
    centre = (int(round(cx * _ONE)), int(round(cy * _ONE)))
    axes = (max(1, int(round(ax * _ONE))), max(1, int(round(ay * _ONE))))
    cv2.ellipse(mask, centre, axes, math.degrees(angle), 0, 360, value, -1, cv2.LINE_8, _SHIFT)


def stuff_layout(rng: np.random.Generator, size: int, classes: list[int]) -> np.ndarray:
    """Split the image into bands of the given stuff classes with wavy, irregular borders.

    Returns (size, size) int64 holding values of ``classes``, in band order.
    """
    if len(classes) == 1:
        return np.full((size, size), classes[0], dtype=np.int64)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = math.pi / 2 + rng.uniform(-0.6, 0.6)  # bands run across the image, mostly stacked vertically
    ramp = x * math.cos(angle) + y * math.sin(angle)
    ramp = ramp + 0.12 * smooth_noise(rng, size, size, 2.5) + 0.04 * smooth_noise(rng, size, size, 8.0)
    # cut at quantiles so that every band keeps at least ~15% of the image
    gaps = rng.dirichlet(np.full(len(classes), 4.0)) * (1 - 0.15 * len(classes)) + 0.15
    cuts = np.quantile(ramp, np.cumsum(gaps)[:-1])
    return np.asarray(classes, dtype=np.int64)[np.searchsorted(cuts, ramp)]


def warp_mask(rng: np.random.Generator, mask: np.ndarray, amplitude: float, cells: float = 4.0) -> np.ndarray:
    """Bend a 0/1 mask with a smooth random displacement of about ``amplitude`` pixels."""
    if amplitude <= 0:
        return mask
    h, w = mask.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = amplitude * smooth_noise(rng, h, w, cells)
    dy = amplitude * smooth_noise(rng, h, w, cells)
    return cv2.remap(mask, x + dx, y + dy, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)


def ball(rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> tuple[np.ndarray, float]:
    mask = np.zeros((size, size), np.uint8)
    angle = rng.uniform(0, math.pi)
    _ellipse(mask, cx, cy, r, r * rng.uniform(0.8, 1.0), angle, 1)
    return mask, angle


def star(rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> tuple[np.ndarray, float]:
    mask = np.zeros((size, size), np.uint8)
    n = int(rng.integers(4, 8))
    inner = rng.uniform(0.42, 0.6)
    t = np.arange(2 * n) * math.pi / n
    radius = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner) * r * rng.uniform(0.9, 1.1, size=2 * n)
    angle = rng.uniform(0, 2 * math.pi)
    points = _rotate(np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1), angle, cx, cy)
    cv2.fillPoly(mask, [_pts(points)], 1, cv2.LINE_8, _SHIFT)
    return mask, angle


def crate(rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> tuple[np.ndarray, float]:
    mask = np.zeros((size, size), np.uint8)
    hw, hh = r, r * rng.uniform(0.6, 1.0)
    angle = rng.uniform(-0.6, 0.6)
    corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
    cv2.fillPoly(mask, [_pts(_rotate(corners, angle, cx, cy))], 1, cv2.LINE_8, _SHIFT)
    # the frame: value 2 marks a band along the border, painted darker by the scene
    f = 0.14 * r
    inner = np.array([[-hw + f, -hh + f], [hw - f, -hh + f], [hw - f, hh - f], [-hw + f, hh - f]])
    frame = mask.copy()
    cv2.fillPoly(frame, [_pts(_rotate(inner, angle, cx, cy))], 0, cv2.LINE_8, _SHIFT)
    mask[frame > 0] = 2
    return mask, angle


def ring(rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> tuple[np.ndarray, float]:
    mask = np.zeros((size, size), np.uint8)
    angle = rng.uniform(0, math.pi)
    ay = r * rng.uniform(0.75, 1.0)
    hole = rng.uniform(0.5, 0.68)
    _ellipse(mask, cx, cy, r, ay, angle, 1)
    _ellipse(mask, cx, cy, r * hole, ay * hole, angle, 0)
    return mask, angle


def critter(rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> tuple[np.ndarray, float]:
    """A four-legged animal seen from the side: body, head, thin legs and a tail."""
    mask = np.zeros((size, size), np.uint8)
    tilt = rng.uniform(-0.3, 0.3)
    face = 1.0 if rng.random() < 0.5 else -1.0
    bh = 0.5 * r * rng.uniform(0.85, 1.15)  # half height of the body
    leg = r * rng.uniform(0.45, 0.7)
    thick = max(2.0, 0.14 * r)
    _ellipse(mask, cx, cy, r, bh, tilt, 1)
    head = _rotate(np.array([[face * 0.95 * r, -0.55 * bh - 0.3 * r]]), tilt, cx, cy)[0]
    _ellipse(mask, head[0], head[1], 0.33 * r, 0.28 * r, tilt, 1)
    lines = [[[face * 0.7 * r, -0.3 * bh], [face * 0.9 * r, -0.55 * bh - 0.2 * r]]]  # neck
    for x in (-0.65, -0.35, 0.35, 0.65):
        lines.append([[x * r, 0.5 * bh], [x * r + rng.uniform(-0.15, 0.15) * r, bh + leg]])
    lines.append([[-face * 0.9 * r, -0.2 * bh], [-face * 1.35 * r, -0.2 * bh - rng.uniform(0.2, 0.5) * r]])  # tail
    for k, (a, b) in enumerate(lines):
        a, b = _rotate(np.array([a, b]), tilt, cx, cy)
        width = 2.2 * thick if k == 0 else (0.7 * thick if k == len(lines) - 1 else thick)
        cv2.line(mask, tuple(_pts(a).ravel()), tuple(_pts(b).ravel()), 1, max(1, int(round(width))), cv2.LINE_8, _SHIFT)
    return mask, tilt


OBJECT_SHAPES = {"ball": ball, "star": star, "crate": crate, "ring": ring, "critter": critter}
