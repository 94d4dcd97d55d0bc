"""`Client(url).segment(image)`: the HTTP service from Python, with the in-process API's results.

Standard library only for HTTP (`urllib`), so the client needs no serve extra: numpy and OpenCV,
which wsdeploy already depends on, encode arrays and decode the answers. Images given as a path
or bytes are sent as they are; arrays and PIL images are sent as lossless PNG, so the server sees
exactly the pixels `Segmenter.segment` would and the labels match it.

    from wsdeploy.serving import Client
    client = Client("http://127.0.0.1:8000", api_key=None)
    seg = client.segment("cat.jpg")                  # wsdeploy.Segmentation
    seg = client.segment(array, return_probs=True)   # (K, H, W) float32 probs too
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from wsdeploy.serving.formats import decode_label_png, decode_npz

__all__ = ["Client", "InvalidRequestError", "ServingError"]


class ServingError(RuntimeError):
    """The server answered with an error status, or could not be reached.

    Attributes:
        status: the HTTP status code; 0 when no answer came (refused, unreachable, timed out:
            `code` is 'unreachable' or 'timeout').
        code: the server's error code, e.g. 'queue_full'.
        retry_after: seconds from `Retry-After` (503), else None.
    """

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.retry_after = retry_after


class InvalidRequestError(ServingError, ValueError):
    """400 / 413 / 415: the image or an option was refused (a ValueError, as in process)."""


class Client:
    """A client of one `wsdeploy serve` server.

    Args:
        url: the server's base URL, e.g. 'http://127.0.0.1:8000'.
        api_key: sent as `Authorization: Bearer <api_key>` when set.
        timeout: seconds per HTTP call.
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._classes: list[str] | None = None

    # -- endpoints -----------------------------------------------------------------------------
    def segment(self, image: Any, *, return_probs: bool = False) -> Any:
        """Segment one image on the server.

        Args:
            image: path, encoded bytes, (H, W, 3) uint8 RGB array or PIL image.
            return_probs: also fetch the full-resolution (K, H, W) float32 probabilities.

        Returns:
            a `wsdeploy.Segmentation`, equal to `wsdeploy.load(model).segment(image)`.

        Raises:
            InvalidRequestError: the server refused the image (400, 413, 415).
            ServingError: any other error status (401, 503, 500, ...).
        """
        from wsdeploy.runtime import Segmentation

        body, content_type = _encode_image(image)
        if return_probs:
            data, _ = self._call("POST", "/v1/segment?format=npz&probs=1", body, {"Content-Type": content_type})
            labels, classes, probs = decode_npz(data)
            return Segmentation(labels=labels, probs=probs, classes=classes)
        classes = self.classes()  # before the request: the answer is a bare label PNG
        data, _ = self._call("POST", "/v1/segment?format=png", body, {"Content-Type": content_type})
        return Segmentation(labels=decode_label_png(data, len(classes)), probs=None, classes=list(classes))

    def summary(self, image: Any, *, rle: bool = False, probs: bool = False, probs_size: int = 64) -> dict:
        """The JSON answer: per-class pixel counts and boxes, optional RLE masks and coarse probs."""
        body, content_type = _encode_image(image)
        query = f"?format=json&rle={int(rle)}&probs={int(probs)}&probs_size={int(probs_size)}"
        data, _ = self._call("POST", "/v1/segment" + query, body, {"Content-Type": content_type})
        return json.loads(data)

    def info(self) -> dict[str, Any]:
        """`GET /v1/model`: {'card': the model card, 'serving': the server's settings}."""
        data, _ = self._call("GET", "/v1/model")
        return json.loads(data)

    def classes(self) -> list[str]:
        """The model's class names (fetched once, then cached)."""
        if self._classes is None:
            self._classes = list(self.info()["card"]["classes"])
        return self._classes

    def ready(self) -> bool:
        """True when `/readyz` answers 200 (model loaded and warm)."""
        try:
            self._call("GET", "/readyz")
        except ServingError:
            return False
        except OSError:  # refused, reset: not up yet
            return False
        return True

    # -- plumbing ------------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        headers = dict(headers or {})
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        except TimeoutError:
            raise ServingError(0, "timeout", f"{method} {self.url}{path}: no answer within {self.timeout} s") from None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, unknown host
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise ServingError(0, "timeout", f"{method} {self.url}{path}: no answer within {self.timeout} s") from None
            raise ServingError(0, "unreachable", f"cannot reach {self.url} ({reason}); is `wsdeploy serve` "
                               "running there?") from None


def _encode_image(image: Any) -> tuple[bytes, str]:
    """Request body and content type: files and bytes as they are, arrays as lossless PNG."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"image file not found: {str(path)!r}")
        return path.read_bytes(), "application/octet-stream"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "application/octet-stream"
    import cv2

    from wsdeploy.data.image_io import read_image

    rgb = read_image(image, max_pixels=2**40)  # arrays / PIL -> (H, W, 3) uint8; the server checks the limit
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return buf.tobytes(), "image/png"


def _error_from(exc: urllib.error.HTTPError) -> ServingError:
    try:
        payload = json.loads(exc.read() or b"{}")
        code, message = payload["error"]["code"], payload["error"]["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", exc.reason if isinstance(exc.reason, str) else str(exc)
    retry = exc.headers.get("Retry-After") if exc.headers else None
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    cls = InvalidRequestError if exc.code in (400, 413, 415) else ServingError
    return cls(exc.code, code, message, retry_after)
