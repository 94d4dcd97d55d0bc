"""The one place where images and label maps are read, written and normalised.

Training, export checks, serving and benchmarks all call these functions, so an image means the
same thing everywhere: RGB, uint8, (H, W, 3), normalised with the model card's mean/std.

Accepted inputs of `read_image`: a file path (str or Path), encoded bytes, a numpy array
(H, W) / (H, W, 1) / (H, W, 3) RGB / (H, W, 4) RGBA of dtype uint8, or a PIL image. Grayscale is
replicated to three channels and alpha is dropped. Encoded images are checked against a pixel
limit from their header *before* decoding (see `image_header.py`).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wsdeploy.atomic import atomic_write_bytes
from wsdeploy.data.image_header import image_format_and_size
from wsdeploy.settings import first_line

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageInput",
    "normalize",
    "read_image",
    "read_label_png",
    "write_image",
    "write_label_png",
]

DEFAULT_MAX_PIXELS = 8192 * 8192  # 67 Mpx: a 48 Mpx phone photo passes, a bomb does not
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageInput = Any  # str | os.PathLike | bytes | np.ndarray | PIL.Image.Image


def read_image(src: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read any accepted image input into RGB uint8.

    Args:
        src: path, encoded bytes, numpy uint8 array (H, W[, 1|3|4]) RGB(A), or PIL image.
        max_pixels: refuse images with more than this many pixels (checked before decoding).

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous.

    Raises:
        ValueError: missing file, not an image, corrupt or truncated data, empty image, wrong
            dtype or shape, more than `max_pixels` pixels.
        TypeError: an input of another type.
    """
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        data = _read_file(path, "image")
        try:
            return _decode(data, max_pixels=max_pixels, name=str(path))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _decode(bytes(src), max_pixels=max_pixels, name="bytes")
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels=max_pixels)
    if type(src).__module__.startswith("PIL."):
        return _from_array(_pil_to_array(src), max_pixels=max_pixels)
    raise TypeError(
        "expected an image as a path, bytes, numpy uint8 array (H, W, 3) or PIL image, "
        f"got {type(src).__name__}"
    )


def _read_file(path: Path, what: str) -> bytes:
    """The bytes of `path`; a missing, unreadable or oddly named file is a ValueError."""
    try:
        if not path.is_file():
            raise ValueError(f"{what} file not found: {_quoted(path)}")
        return path.read_bytes()
    except OSError as exc:  # name too long, permission denied, a folder...
        raise ValueError(f"cannot read the {what} file {_quoted(path)}: {exc.strerror or exc}") from None


def _quoted(path: Path, limit: int = 200) -> str:
    text = repr(str(path))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_pixels(height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image: {height}x{width} pixels")
    if height * width > max_pixels:
        raise ValueError(
            f"image too large: {width}x{height} = {height * width} pixels, the limit is "
            f"{max_pixels} (raise it with --max-pixels, or max_pixels= in Python)"
        )


def _decode(data: bytes, *, max_pixels: int, name: str) -> np.ndarray:
    if len(data) == 0:
        raise ValueError("empty image data (0 bytes)")
    fmt, height, width = image_format_and_size(data)
    _check_pixels(height, width, max_pixels)
    _check_complete(data, fmt)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"could not decode the {fmt.upper()} data ({len(data)} bytes): corrupt?")
    _check_decoded_size(bgr.shape[:2], (height, width), fmt)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _check_decoded_size(decoded: tuple[int, ...], header: tuple[int, int], fmt: str) -> None:
    """The pixel limit was checked on the header's size: refuse a file that decodes to another.

    A transposed size is the header's too (JPEG EXIF orientation rotates on decode).
    """
    if tuple(decoded) not in (header, header[::-1]):
        raise ValueError(
            f"corrupt {fmt.upper()}: the header says {header[1]}x{header[0]} pixels but the data "
            f"decodes to {decoded[1]}x{decoded[0]}"
        )


def _check_complete(data: bytes, fmt: str) -> None:
    """Refuse truncated PNG and JPEG files, which decoders may silently fill with grey."""
    if fmt == "png" and b"IEND" not in data[-64:]:
        raise ValueError("truncated PNG: no IEND chunk at the end of the data")
    if fmt == "jpeg":
        scan = data.find(b"\xff\xda")
        if scan < 0 or data.rfind(b"\xff\xd9") < scan:
            raise ValueError("truncated JPEG: no end-of-image marker after the scan data")


def _from_array(arr: np.ndarray, *, max_pixels: int) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 image array, got dtype {arr.dtype}; convert with "
            "(arr * 255).clip(0, 255).astype(np.uint8) if it is float in [0, 1]"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        _check_pixels(arr.shape[0], arr.shape[1], max_pixels)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    _check_pixels(arr.shape[0], arr.shape[1], max_pixels)
    return np.ascontiguousarray(arr[:, :, :3])


def _pil_to_array(img: Any) -> np.ndarray:
    mode = getattr(img, "mode", None)
    if mode in ("RGB", "L", "RGBA"):
        return np.asarray(img)
    return np.asarray(img.convert("RGB"))


def read_label_png(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a PNG of class indices (grayscale or palette, VOC style), 255 = ignore.

    Args:
        path: the PNG file.
        max_pixels: refuse label maps with more than this many pixels (checked before decoding).

    Returns:
        (H, W) uint8 class indices.

    Raises:
        ValueError: missing file, not a PNG, a truncated or corrupt one, a colour (RGB) PNG,
            values above 255, more than `max_pixels` pixels.
        ImportError: a palette PNG without Pillow installed (`pip install "wsdeploy[train]"`).
    """
    path = Path(path)
    data = _read_file(path, "label")
    try:
        fmt, height, width = image_format_and_size(data)
        if fmt != "png":
            raise ValueError(f"label maps must be PNG, got {fmt.upper()}")
        if len(data) < 26:
            raise ValueError(f"truncated PNG header: {len(data)} bytes")
        _check_pixels(height, width, max_pixels)
        _check_complete(data, fmt)
        labels = _decode_label_png(data, path)
        _check_decoded_size(labels.shape[:2], (height, width), fmt)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if labels.ndim != 2:
        raise ValueError(
            f"{path}: expected a single-channel PNG of class indices, got {labels.shape[2]} "
            "channels (a colour-coded mask must be converted to indices first)"
        )
    if labels.dtype != np.uint8:
        if labels.dtype != np.uint16:
            raise ValueError(f"{path}: expected 8- or 16-bit class indices, got {labels.dtype}")
        if labels.size and labels.max() > 255:
            raise ValueError(f"{path}: class indices above 255 (max {int(labels.max())})")
        labels = labels.astype(np.uint8)
    return labels


def _decode_label_png(data: bytes, path: Path) -> np.ndarray:
    """Grayscale through OpenCV, palette through Pillow (the indices, which OpenCV would expand)."""
    if data[25] != 3:
        labels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if labels is None:
            raise ValueError("could not decode the PNG: corrupt?")
        return labels
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            f"{path} is a palette PNG; reading it needs Pillow: pip install \"wsdeploy[train]\""
        ) from exc
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            if img.mode != "P":
                raise ValueError(f"expected a palette PNG, Pillow reads mode {img.mode!r}")
            return np.array(img, dtype=np.uint8)
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:  # Pillow's corrupt-file errors
        raise ValueError(f"could not decode the palette PNG: {type(exc).__name__}: {first_line(exc)}") from None



def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 (H, W, 3) image atomically; the format follows the suffix."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    suffix = Path(path).suffix.lower() or ".png"
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise ValueError(f"could not encode an image as {suffix!r}")
    atomic_write_bytes(path, buf.tobytes())


def write_label_png(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write (H, W) class indices (0..255) as a single-channel PNG, atomically."""
    if labels.ndim != 2:
        raise ValueError(f"expected labels of shape (H, W), got {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"label values must be in 0..255, got {labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    ok, buf = cv2.imencode(".png", labels)
    if not ok:
        raise ValueError("could not encode the label map as PNG")
    atomic_write_bytes(path, buf.tobytes())


def normalize(
    images: np.ndarray | torch.Tensor,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB uint8 images to the network's input.

    Args:
        images: (H, W, 3) or (B, H, W, 3) uint8 RGB, numpy or torch (any device).
        mean, std: per channel, on the [0, 1] scale (the model card's values).

    Returns:
        (B, 3, H, W) float32 on the input's device: (images / 255 - mean) / std.
    """
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {t.dtype}")
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (B, H, W, 3), got {tuple(t.shape)}")
    x = t.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s
