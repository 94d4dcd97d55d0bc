"""Response formats of `POST /v1/segment`, both directions (the server encodes, the client decodes).

- `png` (`image/png`, the default): the label map, one class index per pixel; 8-bit grayscale PNG,
  16-bit when the model has more than 256 classes. Class names: `GET /v1/model`.
- `json` (`application/json`): a summary per class present (pixel count, bounding box), optional
  COCO-style RLE masks (`rle=1`) and optional probabilities downsampled to at most `probs_size`
  pixels on the longer side (`probs=1`).
- `npz` (`application/x-npz`): `labels`, `classes` and, with `probs=1`, full-resolution float32
  `probs`, exactly what `Segmenter.segment` returns; read with `np.load(..., allow_pickle=False)`.

Only numpy and OpenCV here, so the client can decode without the server extras.
"""
from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np

from wsdeploy.settings import first_line

__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "decode_label_png",
    "decode_npz",
    "encode_label_png",
    "encode_npz",
    "negotiate",
    "rle_encode",
    "summarize",
]

MEDIA_TYPES = {"png": "image/png", "json": "application/json", "npz": "application/x-npz"}
FORMATS = tuple(MEDIA_TYPES)
ANSWER_MAX_PIXELS = 8192 * 8192  # the client's bound on a decoded answer (wsdeploy.data's image limit)
ANSWER_MAX_BYTES = 4 * 2**30  # npz: labels + (K, H, W) float32 probs of a large image


def negotiate(query_format: str | None, accept: str | None) -> str | None:
    """The response format: `?format=` wins, then the `Accept` header, else 'png'.

    Returns None for an unknown `?format=` value or an `Accept` that names none of ours and no
    wildcard (the caller answers 400 / 406).
    """
    if query_format:
        return query_format.lower() if query_format.lower() in MEDIA_TYPES else None
    if not accept:
        return "png"
    ranked = []
    for i, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        quality = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    quality = float(f[2:])
                except ValueError:
                    quality = 0.0
        ranked.append((-quality, i, fields[0].lower()))
    for neg_q, _, media in sorted(ranked):
        if neg_q == 0:
            continue
        for fmt, mt in MEDIA_TYPES.items():
            if media == mt:
                return fmt
        if media in ("*/*", "image/*"):
            return "png"
        if media == "application/*":
            return "json"
    return None


def encode_label_png(labels: np.ndarray) -> bytes:
    """labels: (H, W) uint8, or integer < 65536 (16-bit PNG) -> PNG bytes."""
    if labels.dtype != np.uint8:
        labels = labels.astype(np.uint16)
    ok, buf = cv2.imencode(".png", labels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("could not encode the label map as PNG")
    return buf.tobytes()


def decode_label_png(data: bytes, num_classes: int, *, max_pixels: int = ANSWER_MAX_PIXELS) -> np.ndarray:
    """PNG bytes -> (H, W) uint8 labels (int32 above 256 classes, like `Segmenter.segment`).

    Raises:
        ValueError: not a complete single-channel PNG, or one over `max_pixels` (read from its
            header before decoding, so a hostile answer cannot make the client allocate).
    """
    from wsdeploy.data.image_header import image_format_and_size

    try:
        fmt, height, width = image_format_and_size(data)
    except ValueError as exc:
        raise ValueError(f"the server's answer is not a label PNG: {exc}") from None
    if fmt != "png" or not 0 < height * width <= max_pixels or b"IEND" not in data[-64:]:
        raise ValueError(
            f"the server's answer is not a complete label PNG of at most {max_pixels} pixels "
            f"({fmt.upper()}, {width}x{height})"
        )
    labels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2 or labels.shape != (height, width):
        raise ValueError("the server's answer is not a single-channel label PNG")
    return labels.astype(np.uint8 if num_classes <= 256 else np.int32)


def encode_npz(labels: np.ndarray, classes: list[str], probs: np.ndarray | None) -> bytes:
    """labels (H, W), probs (K, H, W) float32 or None -> uncompressed .npz bytes."""
    arrays: dict[str, np.ndarray] = {"labels": labels, "classes": np.asarray(classes, dtype=np.str_)}
    if probs is not None:
        arrays["probs"] = probs
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_npz(
    data: bytes, *, max_bytes: int = ANSWER_MAX_BYTES
) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """.npz bytes -> (labels, classes, probs or None); never unpickles.

    Raises:
        ValueError: not a zip of .npy arrays, `labels` or `classes` missing, wrong shapes or
            dtypes, or arrays declaring more than `max_bytes` in all (checked from the .npy
            headers before any array is allocated).
    """
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(_npy_nbytes(archive, info) for info in archive.infolist())
            if declared > max_bytes:
                raise ValueError(f"the arrays declare {declared} bytes, over the limit of {max_bytes}")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = [k for k in ("labels", "classes") if k not in npz.files]
            if missing:
                raise ValueError(f"no {missing} array in it")
            labels, classes = npz["labels"], npz["classes"]
            probs = npz["probs"] if "probs" in npz.files else None
    except ValueError as exc:
        raise ValueError(f"the server's NPZ answer is invalid: {first_line(exc, limit=200)}") from None
    except (OSError, EOFError, KeyError, NotImplementedError, RuntimeError, zipfile.BadZipFile) as exc:
        raise ValueError(f"the server's NPZ answer is not a readable .npz: {type(exc).__name__}: {first_line(exc, limit=200)}") from None
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"the server's NPZ labels must be (H, W) integers, got {labels.shape} {labels.dtype}")
    if classes.ndim != 1 or classes.dtype.kind != "U":
        raise ValueError(f"the server's NPZ classes must be a list of names, got {classes.shape} {classes.dtype}")
    if probs is not None and (probs.ndim != 3 or probs.dtype.kind != "f" or probs.shape[1:] != labels.shape):
        raise ValueError(f"the server's NPZ probs must be (K, H, W) floats, got {probs.shape} {probs.dtype}")
    return labels, [str(c) for c in classes], probs


def _npy_nbytes(archive: Any, info: Any) -> int:
    """Bytes an .npy member of an archive declares in its header (0 for other members)."""
    if not info.filename.endswith(".npy"):
        return 0
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    return int(np.prod(shape, dtype=object)) * dtype.itemsize



def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a (H, W) bool mask: column-major run lengths, zeros first.

    `pycocotools.mask.frPyObjects(rle, h, w)` reads it; decode by hand with
    `np.repeat([0, 1] * n, counts)[: h * w].reshape(w, h).T`.
    """
    flat = np.asarray(mask, dtype=bool).T.ravel()  # column-major, as COCO
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts  # RLE starts with a run of zeros
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def summarize(
    labels: np.ndarray,
    classes: list[str],
    probs: np.ndarray | None = None,
    *,
    rle: bool = False,
    probs_size: int = 64,
) -> dict[str, Any]:
    """The JSON answer: one entry per class present, optional masks and coarse probabilities.

    Args:
        labels: (H, W) integer class indices.
        probs: (K, H, W) float32, or None to leave probabilities out.
        rle: add each class's mask as COCO RLE.
        probs_size: probabilities are area-downsampled so the longer side is at most this.

    Returns:
        {"height", "width", "classes", "segments": [{"id", "class", "pixels",
        "box": [x0, y0, x1, y1] (x1, y1 exclusive), "rle"?}], "probs"?: {"shape", "data"}}.
    """
    height, width = labels.shape
    counts = np.bincount(labels.ravel(), minlength=len(classes))
    segments = []
    for k in np.flatnonzero(counts):
        mask = labels == k
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        entry: dict[str, Any] = {
            "id": int(k),
            "class": classes[k],
            "pixels": int(counts[k]),
            "box": [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1],
        }
        if rle:
            entry["rle"] = rle_encode(mask)
        segments.append(entry)
    out: dict[str, Any] = {"height": height, "width": width, "classes": list(classes), "segments": segments}
    if probs is not None:
        scale = min(1.0, probs_size / max(height, width))
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        small = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in probs])
        out["probs"] = {"shape": [len(classes), h, w], "data": np.round(small, 4).tolist()}
    return out
