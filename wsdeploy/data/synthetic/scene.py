"""Render one synthetic scene: image, dense mask and simulated scribbles.

Recipe (all randomness from one ``np.random.Generator``, so a seed fixes every pixel):

1. background: 1..``max_stuff`` stuff classes in wavy bands (``stuff_layout``);
2. objects: ``min_objects``..``max_objects`` things of random class, size, place and pose,
   painted back to front so later ones occlude earlier ones, outlines bent by a smooth warp;
3. colour: every region gets a random mean colour (its class's typical hue with probability
   ``colour_prior``, else any hue), redrawn until it differs by ``min_contrast`` from every
   region it touches (boundaries are colour edges), and a class-specific texture that
   modulates it by ``texture_contrast``;
4. photometry: global illumination gradient, colour cast, lens blur, sensor noise;
5. scribbles: ``scribbles_from_mask`` on the object instances and stuff regions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from wsdeploy.data.synthetic.scribbles import scribbles_from_mask
from wsdeploy.data.synthetic.config import CLASSES, STUFF_CLASSES, THING_CLASSES, TYPICAL_HUE, SyntheticConfig
from wsdeploy.data.synthetic.shapes import OBJECT_SHAPES, stuff_layout, warp_mask
from wsdeploy.data.synthetic.textures import TEXTURES, smooth_noise

__all__ = ["Scene", "render_scene"]

# texture of each class; shared textures make shape necessary (sky/star, grass/ring, sand/ball)
_CLASS_TEXTURE = {
    "sky": "smooth", "grass": "blades", "sand": "grain", "water": "waves",
    "ball": "grain", "star": "smooth", "crate": "planks", "ring": "blades", "critter": "spots",
}
# how much an object's outline is bent, fraction of its radius (crates are rigid)
_WARP = {"ball": 0.10, "star": 0.06, "crate": 0.03, "ring": 0.06, "critter": 0.05}


class Scene(NamedTuple):
    """One rendered scene.

    image: (H, W, 3) uint8 RGB. mask: (H, W) uint8 class indices into ``CLASSES`` (no ignore
    pixels). scribbles: (H, W) uint8, the class on scribbled pixels, 255 elsewhere.
    """

    image: np.ndarray
    mask: np.ndarray
    scribbles: np.ndarray


def render_scene(seed: int | np.random.Generator, *, config: SyntheticConfig | None = None) -> Scene:
    """Render one scene.

    Args:
        seed: an int >= 0 or a ``np.random.Generator``; equal seeds give identical scenes.
        config: scene and annotation settings; ``SyntheticConfig()`` if None.

    Returns:
        ``Scene(image, mask, scribbles)``, each (size, size[, 3]) uint8.
    """
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"config must be a SyntheticConfig, got {type(config).__name__}")
    rng = _as_rng(seed)
    size = config.size
    scale = size / 256.0  # geometry follows the image size ...
    texture_scale = max(scale, config.min_texture_scale)  # ... textures only down to a floor

    # 1. background stuff
    n_stuff = int(rng.integers(1, config.max_stuff + 1))
    stuff = [int(c) for c in rng.choice(STUFF_CLASSES, size=n_stuff, replace=False)]
    layout = stuff_layout(rng, size, stuff)
    instances = np.full((size, size), -1, dtype=np.int32)
    instance_class: list[int] = []
    instance_colour: list[np.ndarray] = []
    image = np.zeros((size, size, 3), dtype=np.float32)
    for cls in stuff:
        region = layout == cls
        if not region.any():
            continue
        colour = _pick_colour(rng, cls, instance_colour, config)
        pattern = TEXTURES[_CLASS_TEXTURE[CLASSES[cls]]](rng, size, size, scale=texture_scale)
        _paint(image, region, pattern, colour, _texture_delta(rng, config))
        instances[region] = len(instance_class)
        instance_class.append(cls)
        instance_colour.append(colour)

    # 2.-3. objects, back to front
    n_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    lo, hi = config.object_scale
    ring_px = max(2, int(round(4 * scale)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1, 2 * ring_px + 1))
    for _ in range(n_objects):
        cls = int(rng.choice(THING_CLASSES))
        name = CLASSES[cls]
        r = math.exp(rng.uniform(math.log(lo), math.log(hi))) * size
        cx, cy = rng.uniform(0.05, 0.95, size=2) * size
        shape, angle = OBJECT_SHAPES[name](rng, size, cx, cy, r)
        shape = warp_mask(rng, shape, _WARP[name] * r)
        region = shape > 0
        if not region.any():
            continue
        around = (cv2.dilate(region.astype(np.uint8), kernel) > 0) & ~region
        neighbours = [instance_colour[i] for i in np.unique(instances[around]) if i >= 0]
        colour = _pick_colour(rng, cls, neighbours, config)
        pattern = _object_pattern(rng, name, shape, angle, cx, cy, r, texture_scale)
        _paint(image, region, pattern, colour, _texture_delta(rng, config))
        instances[region] = len(instance_class)
        instance_class.append(cls)
        instance_colour.append(colour)

    mask = np.asarray(instance_class, dtype=np.uint8)[instances]

    # 4. photometry
    image = _photometry(rng, image, config, scale)

    # 5. scribbles
    scribbles = scribbles_from_mask(
        mask, rng=rng, instances=instances, width=config.scribble_width, coverage=config.scribble_coverage,
        margin=config.scribble_margin, max_strokes=config.max_strokes,
    )
    return Scene(image=image, mask=mask, scribbles=scribbles)


def _as_rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0 or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _random_colour(rng: np.random.Generator, cls: int, colour_prior: float) -> np.ndarray:
    """A region's mean RGB colour: the class's typical hue with probability ``colour_prior``,
    else any hue; saturation and brightness from one range shared by all classes."""
    typical = rng.random() < colour_prior
    hue = (TYPICAL_HUE[cls] + rng.normal(0.0, 6.0)) % 180 if typical else rng.uniform(0, 180)
    hsv = np.array([[[hue, rng.uniform(30, 230), rng.uniform(60, 235)]]], dtype=np.float32)
    hsv = np.clip(np.round(hsv), 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(3).astype(np.float32)


def _pick_colour(rng: np.random.Generator, cls: int, avoid: list[np.ndarray], config: SyntheticConfig) -> np.ndarray:
    """Draw colours until one is ``min_contrast`` away from all of ``avoid``; after 60 tries keep
    the farthest seen."""
    best, best_gap = None, -1.0
    for _ in range(60):
        colour = _random_colour(rng, cls, config.colour_prior)
        gap = min((float(np.linalg.norm(colour - a)) for a in avoid), default=math.inf)
        if gap >= config.min_contrast:
            return colour
        if gap > best_gap:
            best, best_gap = colour, gap
    return best


def _texture_delta(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """RGB difference between a texture's two colours: mostly brightness, some hue."""
    direction = np.ones(3) / math.sqrt(3) + 0.5 * rng.standard_normal(3)
    magnitude = rng.uniform(*config.texture_contrast)
    return (magnitude * direction / np.linalg.norm(direction)).astype(np.float32)


def _paint(image: np.ndarray, region: np.ndarray, pattern: np.ndarray, colour: np.ndarray, delta: np.ndarray) -> None:
    """image[region] = colour + pattern * delta / 2 (pattern (H, W) or per-region values)."""
    values = pattern[region] if pattern.shape == region.shape else pattern
    image[region] = colour[None, :] + values[:, None] * (delta[None, :] / 2)


def _object_pattern(
    rng: np.random.Generator, name: str, shape: np.ndarray, angle: float, cx: float, cy: float, r: float,
    scale: float,
) -> np.ndarray:
    """The (H, W) float32 pattern of one object: its texture, plus a frame (crate) or sphere
    shading (ball). Only the pixels where ``shape > 0`` are used."""
    ys, xs = np.nonzero(shape)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = int(y1 - y0), int(x1 - x0)
    texture = TEXTURES[_CLASS_TEXTURE[name]]
    local = texture(rng, h, w, scale=scale, angle=angle) if name == "crate" else texture(rng, h, w, scale=scale)
    if name == "crate":
        local = np.where(shape[y0:y1, x0:x1] == 2, -1.2, local)
    if name == "ball":
        light = rng.uniform(0, 2 * math.pi)
        hx, hy = cx + 0.4 * r * math.cos(light) - x0, cy + 0.4 * r * math.sin(light) - y0
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        falloff = np.sqrt((xx - hx) ** 2 + (yy - hy) ** 2) / (1.4 * r)
        local = 0.6 * local + 1.4 * (0.5 - np.clip(falloff, 0.0, 1.0))
    pattern = np.zeros(shape.shape, dtype=np.float32)
    pattern[y0:y1, x0:x1] = local
    return pattern


def _photometry(rng: np.random.Generator, image: np.ndarray, config: SyntheticConfig, scale: float) -> np.ndarray:
    """Illumination gradient, colour cast, blur and noise; returns (H, W, 3) uint8."""
    size = image.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    direction = rng.uniform(0, 2 * math.pi)
    ramp = x * math.cos(direction) + y * math.sin(direction) + 0.15 * smooth_noise(rng, size, size, 2.0)
    gain = 1.0 + config.lighting * rng.uniform(0.3, 1.0) * 2.0 * ramp
    cast = 1.0 + rng.uniform(-config.colour_cast, config.colour_cast, size=3).astype(np.float32)
    image = image * gain[..., None] * cast[None, None, :]
    sigma = rng.uniform(*config.blur_sigma) * scale
    if sigma > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise = rng.uniform(*config.noise_std)
    image = image + noise * rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
