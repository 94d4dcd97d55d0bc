"""Real-looking images for parity checks and INT8 calibration, through the runtime's one
pre-processing path (`wsdeploy.runtime.preprocess`)."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from wsdeploy.checkpoint import ModelCard
from wsdeploy.data.image_io import read_image
from wsdeploy.data.index import IMAGE_SUFFIXES
from wsdeploy.runtime import DEFAULT_MODEL_PATH, preprocess

__all__ = ["default_check_images", "image_files", "load_images", "network_inputs"]

# four real street photographs (CamVid val frames, 480x360; attribution and license in the
# README.md beside them), the kind of image the bundled model is made for
CHECK_IMAGES = DEFAULT_MODEL_PATH.parent / "camvid_samples" / "images"


def image_files(folder: str | os.PathLike, *, limit: int | None = None) -> list[Path]:
    """Image files in `folder` (sorted by name, at most `limit`); ValueError if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"image folder not found: {str(root)!r}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images in {str(root)!r} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files[:limit] if limit is not None else files


def default_check_images(*, count: int = 4) -> list[np.ndarray]:
    """The images a parity check and INT8 calibration use when given none: the four CamVid
    street photos the package ships (480x360; real photos, not synthetic scenes, so an INT8
    engine is calibrated and checked on what it will see), else synthetic scenes
    (`wsdeploy.data.synthetic.render_scene`, seeds 0..count-1).

    Returns:
        at most `count` (H, W, 3) uint8 RGB arrays.
    """
    if CHECK_IMAGES.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in CHECK_IMAGES.iterdir()):
        return [read_image(p) for p in image_files(CHECK_IMAGES, limit=count)]
    from wsdeploy.data.synthetic import render_scene

    return [render_scene(seed).image for seed in range(count)]


def load_images(
    images: str | os.PathLike | Sequence[object] | None, *, limit: int | None = None
) -> list[np.ndarray]:
    """A folder, a list of image inputs (paths, arrays, ...), or None (the defaults) -> RGB arrays."""
    if images is None:
        return default_check_images()
    if isinstance(images, (str, os.PathLike)):
        return [read_image(p) for p in image_files(images, limit=limit)]
    arrays = [read_image(item) for item in images]
    if not arrays:
        raise ValueError("got an empty list of images")
    return arrays[:limit] if limit is not None else arrays


def network_inputs(
    images: Sequence[np.ndarray], card: ModelCard, *, multiple: int, size: tuple[int, int] | None = None
) -> Iterator[torch.Tensor]:
    """One (1, 3, Hp, Wp) float32 network input per image, as `Segmenter` would build it.

    Args:
        images: (H, W, 3) uint8 RGB arrays.
        card: the model card (mean/std).
        multiple: the backend's `input_multiple` (padding).
        size: resize every image to (H, W) first (bilinear), for engines that need one shape
            (e.g. a TensorRT INT8 calibration profile); None keeps each image's own size.
    """
    for image in images:
        if size is not None:
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        yield preprocess(image[None], mean=card.mean, std=card.std, multiple=multiple)
