"""Byte-level fuzz targets: entry points that read untrusted bytes, and their seed inputs.

Each target takes `bytes` (what atheris mutates, coverage-guided; the tests feed seeds mutated by
hypothesis) and checks the contract of `harness.Target`. The seeds are small valid files of each
kind, so mutations start inside the parsers rather than at their first magic-number check.

    image_bytes     read_image(bytes) and the header parser: PNG JPEG BMP GIF WebP TIFF PNM
    label_png       read_label_png(path): grayscale, 16-bit and palette PNGs of class indices
    checkpoint_zip  read_checkpoint / load_checkpoint / load_train_state on a mutated torch zip
    onnx_metadata   parse_metadata on the two JSON documents an export carries
    http_body       read_image_body: raw and multipart/form-data uploads with a size limit
    client_answer   the client's decoders of the server's answers (label PNG, NPZ)
"""
from __future__ import annotations

import asyncio
import atexit
import io
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.fuzz.harness import Target
from wsdeploy.serving.api import RequestError

__all__ = ["BYTE_TARGETS", "seeds"]

FUZZ_MAX_PIXELS = 1 << 20  # decodes stay small: the contract, not the machine, is under test
BODY_LIMIT = 4096

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # OpenCV logs every refused file to stderr; the harness records what matters


@lru_cache(maxsize=1)
def _scratch() -> Path:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="wsdeploy-fuzz-", dir=base))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _as_file(data: bytes, name: str) -> Path:
    path = _scratch() / name
    path.write_bytes(data)
    return path


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 1.5)


# -- image_bytes -------------------------------------------------------------------------------
def _read_image(data: bytes) -> tuple[np.ndarray, tuple[str, int, int] | None]:
    from wsdeploy.data.image_header import image_format_and_size
    from wsdeploy.data.image_io import read_image

    try:
        header = image_format_and_size(data)
    except ValueError:
        header = None
    return read_image(data, max_pixels=FUZZ_MAX_PIXELS), header


def _check_image(data: bytes, result: tuple[np.ndarray, Any]) -> None:
    image, header = result
    assert header is not None, "read_image decoded bytes whose header image_format_and_size refuses"
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8, f"got {type(image)} {getattr(image, 'dtype', '')}"
    assert image.ndim == 3 and image.shape[2] == 3 and image.flags.c_contiguous, f"shape {image.shape}"
    h, w = image.shape[:2]
    assert h * w <= FUZZ_MAX_PIXELS, f"decoded {w}x{h}, over the pixel limit the header check enforces"
    assert (h, w) in (header[1:], header[:0:-1]), f"the header says {header[2]}x{header[1]} but {w}x{h} pixels were decoded"


def _image_seeds() -> list[bytes]:
    from PIL import Image

    out = []
    for i, (h, w) in enumerate([(5, 7), (16, 9), (1, 1)]):
        im = _scene(h, w, i)
        for ext, params in [(".png", []), (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 80]), (".bmp", []),
                            (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 50]),
                            (".tiff", []), (".ppm", [])]:
            ok, buf = cv2.imencode(ext, im[:, :, ::-1], params)
            assert ok
            out.append(buf.tobytes())
        ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
        out.append(buf.tobytes())
        ok, buf = cv2.imencode(".png", im[:, :, 0])  # grayscale
        out.append(buf.tobytes())
        for mode in ("RGB", "P", "L"):
            b = io.BytesIO()
            Image.fromarray(im).convert(mode).save(b, "GIF")
            out.append(b.getvalue())
        b = io.BytesIO()
        Image.fromarray(im).save(b, "TIFF", compression="tiff_lzw")
        out.append(b.getvalue())
    return out


# -- label_png ---------------------------------------------------------------------------------
def _read_label(data: bytes) -> np.ndarray:
    from wsdeploy.data.image_io import read_label_png

    return read_label_png(_as_file(data, "label.png"), max_pixels=FUZZ_MAX_PIXELS)


def _check_label(data: bytes, labels: np.ndarray) -> None:
    from wsdeploy.data.image_header import image_format_and_size

    assert isinstance(labels, np.ndarray) and labels.dtype == np.uint8 and labels.ndim == 2, (
        f"got {getattr(labels, 'shape', None)} {getattr(labels, 'dtype', type(labels))}"
    )
    _, h, w = image_format_and_size(data)
    assert labels.shape == (h, w), f"the header says {w}x{h}, decoded {labels.shape[1]}x{labels.shape[0]}"


def _label_seeds() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (6, 9), dtype=np.uint8)
    labels[0, :3] = 255
    out = [cv2.imencode(".png", labels)[1].tobytes(), cv2.imencode(".png", labels.astype(np.uint16) * 300)[1].tobytes()]
    pal = Image.fromarray(labels, mode="P")
    pal.putpalette([c for k in range(256) for c in (k, 255 - k, (7 * k) % 256)])
    for extra in ({}, {"transparency": 0}):
        b = io.BytesIO()
        pal.save(b, "PNG", **extra)
        out.append(b.getvalue())
    out.append(cv2.imencode(".png", _scene(4, 5))[1].tobytes())  # colour: refused
    return out


# -- checkpoint_zip ----------------------------------------------------------------------------
def _read_checkpoint(data: bytes) -> Any:
    from wsdeploy.checkpoint import load_checkpoint, read_checkpoint
    from wsdeploy.training.state import load_train_state

    path = _as_file(data, "model.pt")
    results = []
    for reader in (read_checkpoint, load_checkpoint, load_train_state):
        try:
            results.append(reader(path))
        except ValueError as exc:
            _one_line(exc)
            results.append(None)
    return results


def _one_line(exc: BaseException) -> None:
    from tests.fuzz.harness import MAX_MESSAGE

    message = str(exc)
    assert message.strip() and "\n" not in message and len(message) <= MAX_MESSAGE, (
        f"{type(exc).__name__} message of {len(message)} chars: {message[:200]!r}"
    )


def _check_checkpoint(data: bytes, results: list[Any]) -> None:
    import torch

    from wsdeploy.checkpoint import ModelCard

    read, loaded, state = results
    if read is not None:
        card, weights = read
        assert isinstance(card, ModelCard) and all(isinstance(v, torch.Tensor) for v in weights.values())
        json.dumps(card.to_dict())  # a card must stay writable into export metadata
    if loaded is not None:
        model, card = loaded
        assert isinstance(model, torch.nn.Module) and isinstance(card, ModelCard)
    if state is not None:
        assert isinstance(state, dict) and isinstance(state.get("step"), int), "train state without an int step"


@lru_cache(maxsize=1)
def _tiny_card() -> dict[str, Any]:
    from wsdeploy.checkpoint import ModelCard

    return ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 8}, classes=["bg", "a"], supervision="scribbles",
                     losses={"pce": 1.0}, evaluation={"miou": 0.5}).to_dict()


def _checkpoint_seeds() -> list[bytes]:
    import torch

    def saved(payload: Any) -> bytes:
        b = io.BytesIO()
        torch.save(payload, b)
        return b.getvalue()

    weights = {"conv.weight": torch.arange(12, dtype=torch.float32).view(3, 4), "bn.num_batches_tracked": torch.tensor(3)}
    train = {"format": "wsdeploy-train-state", "version": 1, "step": 4, "samples_per_rank": 8, "config": {"data": "d"},
             "classes": ["bg", "a"], "model": weights, "optimizer": {"state": {}, "param_groups": []}, "scaler": {},
             "rng": [{"torch": torch.zeros(8, dtype=torch.uint8)}]}
    return [
        saved({"format": "wsdeploy-checkpoint", "card": _tiny_card(), "state_dict": weights}),
        saved(train),
        saved({"format": "wsdeploy-checkpoint", "card": {"format_version": 1}, "state_dict": [1, 2]}),
        saved(weights),
    ]


# -- onnx_metadata -----------------------------------------------------------------------------
def _parse_metadata(data: bytes) -> Any:
    from wsdeploy.backends.metadata import CARD_KEY, RUNTIME_KEY, parse_metadata

    card, _, runtime = data.partition(b"\x00")
    metadata = {CARD_KEY: card.decode("utf-8", "replace"), RUNTIME_KEY: runtime.decode("utf-8", "replace")}
    return parse_metadata(metadata, source="fuzz.onnx")


def _check_metadata(data: bytes, info: Any) -> None:
    from wsdeploy.backends.metadata import PRECISIONS, ExportInfo

    assert isinstance(info, ExportInfo)
    assert isinstance(info.input_multiple, int) and info.input_multiple >= 1
    assert isinstance(info.logit_stride, int) and info.logit_stride >= 1
    assert info.precision in PRECISIONS
    assert info.input_shape is None or (len(info.input_shape) == 4 and all(isinstance(d, int) for d in info.input_shape))
    json.dumps(info.card.to_dict())


def _metadata_seeds() -> list[bytes]:
    from wsdeploy.backends.metadata import runtime_info

    card = json.dumps(_tiny_card()).encode()
    return [
        card + b"\x00" + json.dumps(runtime_info(input_multiple=32, logit_stride=4, precision=p, input_shape=s)).encode()
        for p, s in (("fp32", None), ("fp16", (1, 3, 64, 64)), ("int8", None))
    ]


# -- http_body ---------------------------------------------------------------------------------
class _FakeRequest:
    def __init__(self, headers: dict[str, str], body: bytes, chunk: int) -> None:
        from starlette.datastructures import Headers

        self.headers = Headers(headers)
        self._body, self._chunk = body, chunk

    async def stream(self) -> Any:
        for i in range(0, len(self._body), self._chunk):
            yield self._body[i : i + self._chunk]


@lru_cache(maxsize=1)
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def _read_body(data: bytes) -> Any:
    from wsdeploy.serving.body import read_image_body

    flags = data[0] if data else 0
    head, _, body = data[1:].partition(b"\n")
    headers = {"content-type": head.decode("latin-1").strip()}
    if flags & 1:
        headers["content-length"] = str(len(body))
    elif flags & 2:
        headers["content-length"] = head[:12].decode("latin-1")
    chunk = (1, 7, 64, 1 << 20)[(flags >> 2) & 3]
    request = _FakeRequest(headers, body, chunk)
    try:
        out = _loop().run_until_complete(read_image_body(request, BODY_LIMIT, ("application/octet-stream",)))
    except RequestError as exc:
        assert exc.status in (400, 413, 415) and exc.code, f"status {exc.status} ({exc.code!r}) for a bad body"
        raise
    return out, body


def _check_body(data: bytes, result: tuple[Any, bytes]) -> None:
    out, body = result
    assert isinstance(out, bytes) and len(out) <= BODY_LIMIT, f"got {type(out).__name__} of {len(out or b'')} bytes"
    media = data[1:].partition(b"\n")[0].decode("latin-1").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        assert out == body, "a raw upload came back changed"


def _body_seeds() -> list[bytes]:
    png = cv2.imencode(".png", _scene(4, 4))[1].tobytes()
    boundary = b"----wsdeployFuzzBoundary7"
    part = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n")
    field = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
    end = b"--" + boundary + b"--\r\n"
    multipart = b"multipart/form-data; boundary=" + boundary + b"\n"
    return [
        bytes([1]) + b"image/png\n" + png,
        bytes([4]) + b"application/octet-stream\n" + png,
        bytes([1]) + multipart + field + part + end,
        bytes([8]) + multipart + part + end,
        bytes([1]) + multipart + field + end,
        bytes([0]) + b"text/plain\nhello",
    ]


# -- client_answer -----------------------------------------------------------------------------
def _decode_answer(data: bytes) -> Any:
    from wsdeploy.serving.formats import decode_label_png, decode_npz

    if data[:1] == b"P":
        return decode_label_png(data[1:], num_classes=3, max_pixels=FUZZ_MAX_PIXELS)
    return decode_npz(data[1:], max_bytes=16 * FUZZ_MAX_PIXELS)


def _check_answer(data: bytes, result: Any) -> None:
    if data[:1] == b"P":
        assert isinstance(result, np.ndarray) and result.ndim == 2
        return
    labels, classes, probs = result
    assert isinstance(labels, np.ndarray) and isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    assert probs is None or isinstance(probs, np.ndarray)


def _answer_seeds() -> list[bytes]:
    from wsdeploy.serving.formats import encode_label_png, encode_npz

    labels = np.random.default_rng(2).integers(0, 3, (5, 6), dtype=np.uint8)
    probs = np.random.default_rng(3).random((3, 5, 6), dtype=np.float32)
    return [b"P" + encode_label_png(labels), b"N" + encode_npz(labels, ["a", "b", "c"], probs),
            b"N" + encode_npz(labels, ["a", "b", "c"], None)]


BYTE_TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("image_bytes", _read_image, (ValueError,), _check_image),
        Target("label_png", _read_label, (ValueError,), _check_label),
        Target("checkpoint_zip", _read_checkpoint, (), _check_checkpoint),
        Target("onnx_metadata", _parse_metadata, (ValueError,), _check_metadata),
        Target("http_body", _read_body, (RequestError,), _check_body),
        Target("client_answer", _decode_answer, (ValueError,), _check_answer),
    ]
}

_SEEDS = {
    "image_bytes": _image_seeds, "label_png": _label_seeds, "checkpoint_zip": _checkpoint_seeds,
    "onnx_metadata": _metadata_seeds, "http_body": _body_seeds, "client_answer": _answer_seeds,
}


def seeds(name: str) -> list[bytes]:
    """Valid (or nearly valid) inputs of the target `name`, the starting corpus."""
    return _SEEDS[name]()
