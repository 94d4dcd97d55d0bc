"""`ServeConfig`: every setting of the HTTP service, validated once, in one dataclass."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

__all__ = ["ServeConfig"]

DEFAULT_MAX_PIXELS = 4096 * 4096  # 16.8 Mpx per request: a server bounds memory tighter than a script


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """Settings of `create_app` / `wsdeploy serve`.

    Memory is bounded: at most `max_queue` requests hold a body (<= `max_body_bytes`) and a
    decoded image (<= 3 * `max_pixels` bytes) at once, plus one batch inside the model.

    Attributes:
        model: a model file `wsdeploy.load` accepts (checkpoint or export), or None for the
            bundled default model.
        device: 'auto', 'cpu', 'cuda[:N]'.
        backend: 'auto' (by the file's suffix) or a `wsdeploy.load` backend name.
        crf: refine every answer with the dense CRF (library defaults).
        max_batch_size: the most images per model call (1 = no batching).
        batch_timeout: seconds to wait for more requests after the first of a batch.
        max_queue: the most requests admitted at once (waiting or running); beyond it, 503.
        max_body_bytes: the largest request body; beyond it, 413.
        max_pixels: the largest image (H * W), checked from the header before decoding; 413.
        body_timeout: seconds a client may take to upload its body; 408 beyond (a stalled
            upload must not hold its place in the queue forever).
        api_key: when set, `/v1/*` needs `Authorization: Bearer <api_key>`.
        warmup_size: (H, W) of the dummy image run once before `/readyz` answers 200.
        torch_threads: torch intra-op threads for this process (None keeps torch's default).
    """

    model: str | None = None
    device: str = "auto"
    backend: str = "auto"
    crf: bool = False
    max_batch_size: int = 16
    batch_timeout: float = 0.005
    max_queue: int = 64
    max_body_bytes: int = 20 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    body_timeout: float = 30.0
    api_key: str | None = dataclasses.field(default=None, repr=False)
    warmup_size: tuple[int, int] = (256, 256)
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        if self.model is not None and not isinstance(self.model, str):
            object.__setattr__(self, "model", os.fspath(self.model))
        _check_int("max_batch_size", self.max_batch_size, 1, 1024)
        if not isinstance(self.batch_timeout, (int, float)) or not 0 <= self.batch_timeout <= 10:
            raise ValueError(f"batch_timeout must be in [0, 10] seconds, got {self.batch_timeout!r}")
        _check_int("max_queue", self.max_queue, self.max_batch_size, 1_000_000)
        _check_int("max_body_bytes", self.max_body_bytes, 1024, 2**34)
        _check_int("max_pixels", self.max_pixels, 1, 2**32)
        if not isinstance(self.body_timeout, (int, float)) or not 0 < self.body_timeout <= 3600:
            raise ValueError(f"body_timeout must be in (0, 3600] seconds, got {self.body_timeout!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ValueError("api_key must be a non-empty string or None")
        if self.torch_threads is not None:
            _check_int("torch_threads", self.torch_threads, 1, 1024)
        if len(self.warmup_size) != 2 or min(self.warmup_size) < 1:
            raise ValueError(f"warmup_size must be (H, W) with positive sides, got {self.warmup_size!r}")

    def to_json(self) -> str:
        """For handing the settings to uvicorn worker processes (`from_json` reads it back)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        data: dict[str, Any] = json.loads(text)
        data["warmup_size"] = tuple(data.get("warmup_size", (256, 256)))
        return cls(**data)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
