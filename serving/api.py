"""The service's model logic as named steps (LitServe's `LitAPI` shape), free of HTTP details.

    setup(device)        load the model (never at import) and warm it up
    decode_request(body) encoded image bytes -> (H, W, 3) uint8 RGB; 400 / 413 as `RequestError`
    batch(requests)      the batcher's requests -> the model's input list
    predict(batch)       one `Segmenter.segment` call; images of one size run as one forward pass,
                         different sizes as separate passes inside it (grouped, never padded
                         together, so an answer never depends on its batch-mates)
    unbatch(output)      -> one `Segmentation` per request
    encode_response(...) `Segmentation` -> (body bytes, media type) in the negotiated format

`decode_request` and `encode_response` run in the HTTP worker threads, `predict` (through
`__call__`) in the batcher's single inference thread.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from wsdeploy.serving.config import ServeConfig
from wsdeploy.serving.formats import (
    MEDIA_TYPES,
    encode_label_png,
    encode_npz,
    summarize,
)

__all__ = ["RequestError", "SegmentRequest", "SegmentationAPI"]

logger = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the service refuses; the HTTP layer answers `status` with a JSON error body."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclasses.dataclass
class SegmentRequest:
    """One decoded request on its way through the batcher.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        return_probs: keep the (K, H, W) probabilities for the answer.
    """

    image: np.ndarray
    return_probs: bool = False


class SegmentationAPI:
    """Named serving steps around one `wsdeploy.Segmenter`.

    Args:
        config: the service settings (model path, device, CRF, pixel limit, warm-up size).
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.model: Any = None  # a wsdeploy.Segmenter once setup() has run

    # -- setup -------------------------------------------------------------------------------
    def setup(self, device: str) -> None:
        """Load the model on `device` and run one warm-up batch (slow first-call work happens here)."""
        import wsdeploy
        from wsdeploy.runtime import DEFAULT_MODEL_PATH

        if self.config.torch_threads is not None:
            import torch

            torch.set_num_threads(self.config.torch_threads)
        path = self.config.model or DEFAULT_MODEL_PATH
        self.model = wsdeploy.load(
            path, device=device, backend=self.config.backend, crf=self.config.crf, max_pixels=self.config.max_pixels
        )
        h, w = self.config.warmup_size
        rng = np.random.default_rng(0)
        warm = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        for batch_size in sorted({1, self.config.max_batch_size}):
            self.model.segment([warm] * batch_size)
        logger.info("model %s loaded on %s and warm (%dx%d)", path, self.model.device, h, w)

    @property
    def card(self) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("setup() has not run")
        return self.model.card

    # -- request side ------------------------------------------------------------------------
    def decode_request(self, body: bytes) -> np.ndarray:
        """Encoded image bytes -> (H, W, 3) uint8 RGB.

        Raises:
            RequestError: 413 over the pixel limit (read from the header, before decoding);
                400 empty, not an image, corrupt or truncated.
        """
        from wsdeploy.data.image_header import image_format_and_size
        from wsdeploy.data.image_io import read_image

        if not body:
            raise RequestError(400, "empty_body", "the request has no image data")
        try:
            fmt, height, width = image_format_and_size(body)
        except ValueError as exc:
            raise RequestError(400, "invalid_image", str(exc)) from None
        if height * width > self.config.max_pixels:
            raise RequestError(
                413, "too_many_pixels",
                f"image is {width}x{height} = {height * width} pixels; this server accepts at "
                f"most {self.config.max_pixels}",
            )
        try:
            return read_image(body, max_pixels=self.config.max_pixels)
        except ValueError as exc:
            raise RequestError(400, "invalid_image", f"could not read the {fmt.upper()} image: {exc}") from None

    def batch(self, requests: Sequence[SegmentRequest]) -> list[np.ndarray]:
        """The images to run; `Segmenter.segment` groups them by size."""
        return [r.image for r in requests]

    def predict(self, images: list[np.ndarray], *, return_probs: bool) -> list[Any]:
        """One model call on a list of (H, W, 3) uint8 images -> one `Segmentation` each."""
        return self.model.segment(images, return_probs=return_probs)

    def unbatch(self, output: list[Any], requests: Sequence[SegmentRequest]) -> list[Any]:
        """Drop probabilities the request did not ask for (they are computed for the whole batch)."""
        for seg, req in zip(output, requests):
            if not req.return_probs:
                seg.probs = None
        return output

    def __call__(self, requests: Sequence[SegmentRequest]) -> list[Any]:
        """batch -> predict -> unbatch: what the batcher runs in its inference thread."""
        return_probs = any(r.return_probs for r in requests)
        return self.unbatch(self.predict(self.batch(requests), return_probs=return_probs), requests)

    # -- response side -----------------------------------------------------------------------
    def encode_response(
        self, seg: Any, fmt: str, *, rle: bool = False, probs_size: int = 64
    ) -> tuple[bytes, str]:
        """A `Segmentation` -> (body, media type) for `fmt` in 'png', 'json', 'npz'."""
        if fmt == "png":
            body = encode_label_png(seg.labels)
        elif fmt == "npz":
            body = encode_npz(seg.labels, seg.classes, seg.probs)
        elif fmt == "json":
            summary = summarize(seg.labels, seg.classes, seg.probs, rle=rle, probs_size=probs_size)
            body = json.dumps(summary, separators=(",", ":")).encode()
        else:
            raise ValueError(f"unknown response format {fmt!r}; expected one of {sorted(MEDIA_TYPES)}")
        return body, MEDIA_TYPES[fmt]
