"""Settings and class list of the synthetic benchmark (see ``wsdeploy.data.synthetic``).

Class design: a region's hue is its class's typical hue (OpenCV 0..180 scale, Gaussian sd 6) with
probability ``colour_prior`` and any hue otherwise; saturation and brightness come from one range
for all classes. Typical hues overlap (sky/water blue, sand/star/crate orange-yellow, ball/crate
red-orange), so colour hints but never decides. Identity comes from texture and shape; several
textures are shared between a stuff class and an object class, so only the combination
identifies those:

===  ========  =====  ====  =====================================================
idx  name      kind   hue   identified by
===  ========  =====  ====  =====================================================
0    sky       stuff  110   smooth: soft low-frequency clouds, no fine texture
1    grass     stuff   55   blades: fine oriented streaks, near-vertical
2    sand      stuff   22   grain: isotropic speckle plus faint ripples
3    water     stuff   98   waves: warped parallel bands, near-horizontal
4    ball      thing    2   round/elliptic outline, sphere shading, grain (as sand)
5    star      thing   30   4-7 pointed star outline, smooth (as sky)
6    crate     thing   14   rotated rectangle with a frame and straight planks
7    ring      thing  150   annulus with a hole showing what is behind, blades (as grass)
8    critter   thing   75   body + head + thin legs and tail, blotchy spots
===  ========  =====  ====  =====================================================

Adjacent regions always differ in mean colour by at least ``min_contrast`` (RGB distance),
so every boundary in the mask is a visible colour edge, as in photographs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["CLASSES", "STUFF_CLASSES", "THING_CLASSES", "TYPICAL_HUE", "SyntheticConfig", "GENERATOR_VERSION"]

CLASSES: tuple[str, ...] = ("sky", "grass", "sand", "water", "ball", "star", "crate", "ring", "critter")
STUFF_CLASSES: tuple[int, ...] = (0, 1, 2, 3)
THING_CLASSES: tuple[int, ...] = (4, 5, 6, 7, 8)
TYPICAL_HUE: tuple[float, ...] = (110, 55, 22, 98, 2, 30, 14, 150, 75)  # OpenCV hue, 0..180

# Bump whenever the same (config, seed) would render different pixels.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SyntheticConfig:
    """How scenes look and how they are annotated. Lengths are in pixels at ``size``
    unless stated as a fraction of the image size."""

    size: int = 256  # images are size x size pixels
    # scene content
    max_stuff: int = 3  # 1..max_stuff distinct stuff classes tile the background
    min_objects: int = 1  # objects per image, painted back to front (later ones occlude)
    max_objects: int = 4
    object_scale: tuple[float, float] = (0.12, 0.36)  # object radius, fraction of size
    colour_prior: float = 0.6  # chance a region takes its class's typical hue instead of any hue
    min_contrast: float = 70.0  # least RGB distance between neighbouring regions' mean colours
    texture_contrast: tuple[float, float] = (30.0, 65.0)  # RGB distance between a texture's two colours
    min_texture_scale: float = 0.75  # texture periods shrink with size / 256, but not below this
    # photometry
    lighting: float = 0.35  # strength of the global illumination gradient (0 = flat)
    colour_cast: float = 0.12  # per-channel gain in [1 - c, 1 + c]
    blur_sigma: tuple[float, float] = (0.3, 0.9)  # lens blur, pixels at size 256
    noise_std: tuple[float, float] = (2.0, 6.0)  # additive Gaussian noise, grey levels
    # scribbles (ScribbleSup-like: a few thin strokes well inside each region)
    scribble_width: int = 3  # stroke thickness in pixels
    scribble_coverage: float = 0.03  # target fraction of each region's pixels that is scribbled
    scribble_margin: float = 0.3  # strokes stay this fraction of a region's inscribed radius inside it
    max_strokes: int = 3  # strokes per region at most

    def __post_init__(self) -> None:
        _check_int("size", self.size, 32, 4096)
        _check_int("max_stuff", self.max_stuff, 1, len(STUFF_CLASSES))
        _check_int("min_objects", self.min_objects, 0, 64)
        _check_int("max_objects", self.max_objects, self.min_objects, 64)
        _check_range("object_scale", self.object_scale, 0.01, 1.0)
        _check_range("texture_contrast", self.texture_contrast, 0.0, 255.0)
        _check_range("blur_sigma", self.blur_sigma, 0.0, 10.0)
        _check_range("noise_std", self.noise_std, 0.0, 64.0)
        _check_float("colour_prior", self.colour_prior, 0.0, 1.0)
        _check_float("min_contrast", self.min_contrast, 0.0, 200.0)
        _check_float("min_texture_scale", self.min_texture_scale, 0.0, 4.0)
        _check_float("lighting", self.lighting, 0.0, 0.9)
        _check_float("colour_cast", self.colour_cast, 0.0, 0.5)
        _check_int("scribble_width", self.scribble_width, 1, 64)
        _check_float("scribble_coverage", self.scribble_coverage, 1e-4, 0.5)
        _check_float("scribble_margin", self.scribble_margin, 0.0, 0.95)
        _check_int("max_strokes", self.max_strokes, 1, 32)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of every field (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) tuple, got {value!r}")
    for v in value:
        _check_float(name, v, low, high)
    if value[0] > value[1]:
        raise ValueError(f"{name} must have min <= max, got {value!r}")
