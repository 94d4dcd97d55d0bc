"""The ASGI application: `create_app(ServeConfig(...))` -> a FastAPI app.

    POST /v1/segment   an image (raw body with an image/* or application/octet-stream type, or
                       multipart/form-data with a file part) -> label PNG | JSON | NPZ
    GET  /v1/model     the model card and the serving settings
    GET  /healthz      200 while the process is alive
    GET  /readyz       200 once the model is loaded and warm, 503 before and while draining
    GET  /metrics      Prometheus text format

Start-up: the app answers at once; the model loads and warms up in a background thread
(`SegmentationAPI.setup`), and `/readyz` and `/v1/*` answer 503 + Retry-After until it is done.
Shut-down (lifespan end, after uvicorn stopped accepting and the open requests were answered):
the batcher finishes what is queued, then stops.

Errors are JSON, `{"error": {"code": ..., "message": ...}}`: 400 bad image or option, 401 missing
or wrong API key, 406 unacceptable `Accept`, 408 upload slower than `body_timeout`, 413 body or
pixel limit, 415 content type, 500 the batch failed, 503 not ready, draining or queue full (with
Retry-After). A refused request leaves nothing behind, so the next
one is served normally.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as _exc:  # the serve extra
    raise ImportError(
        f'the HTTP service needs FastAPI and uvicorn ({_exc.name} is missing): pip install "wsdeploy[serve]"'
    ) from _exc

from wsdeploy.serving.api import RequestError, SegmentationAPI, SegmentRequest
from wsdeploy.serving.batching import DynamicBatcher
from wsdeploy.serving.config import ServeConfig
from wsdeploy.serving.formats import FORMATS, negotiate
from wsdeploy.serving.metrics import ServiceMetrics

__all__ = ["Service", "create_app"]

logger = logging.getLogger(__name__)

RAW_TYPES = ("application/octet-stream",)  # plus any image/*
ENDPOINTS = ("/v1/segment", "/v1/model", "/healthz", "/readyz", "/metrics")


class Service:
    """The state behind one app: the API steps, the batcher, readiness and metrics."""

    def __init__(self, config: ServeConfig, api: SegmentationAPI | None = None) -> None:
        self.config = config
        self.api = api or SegmentationAPI(config)
        self.batcher: DynamicBatcher[SegmentRequest, Any] = DynamicBatcher(
            self.api,
            max_batch_size=config.max_batch_size,
            batch_timeout=config.batch_timeout,
            max_queue=config.max_queue,
        )
        self.metrics = ServiceMetrics(
            queue_depth=lambda: self.batcher.queue_depth, in_flight=lambda: self.batcher.admitted
        )
        self.batcher.on_batch = self.metrics.observe_batch
        self.ready = False
        self.draining = False
        self.setup_error: str | None = None
        self._setup_task: asyncio.Future | None = None

    async def start(self) -> None:
        await self.batcher.start()
        loop = asyncio.get_running_loop()
        self._setup_task = loop.run_in_executor(None, self.api.setup, self.config.device)
        self._setup_task.add_done_callback(self._on_setup_done)

    def _on_setup_done(self, task: asyncio.Future) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.setup_error = f"{type(exc).__name__}: {exc}"
            logger.error("model setup failed: %s", self.setup_error)
        else:
            self.ready = True
            logger.info("ready")

    async def stop(self) -> None:
        self.draining = True
        if self._setup_task is not None and not self._setup_task.done():
            with contextlib.suppress(Exception):
                await self._setup_task  # a thread cannot be interrupted; let it finish
        await self.batcher.stop()

    def check_ready(self) -> None:
        if self.setup_error is not None:
            raise RequestError(503, "setup_failed", f"the model failed to load: {self.setup_error}")
        if self.draining:
            raise RequestError(503, "draining", "the server is shutting down", headers={"Retry-After": "1"})
        if not self.ready:
            raise RequestError(503, "not_ready", "the model is loading", headers={"Retry-After": "1"})

    def check_api_key(self, authorization: str | None) -> None:
        key = self.config.api_key
        if key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise RequestError(
                401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )


def create_app(config: ServeConfig | None = None, *, api: SegmentationAPI | None = None) -> FastAPI:
    """Build the FastAPI app; nothing loads until the ASGI lifespan starts.

    Args:
        config: the settings (default `ServeConfig()`: the bundled model, batch 16, 5 ms).
        api: the model steps; default `SegmentationAPI(config)` (tests pass a stub).

    Raises:
        ImportError: the serve extra is missing (`pip install "wsdeploy[serve]"`).
    """
    from wsdeploy.serving.body import check_upload_headers, read_image_body

    from wsdeploy import __version__

    config = config or ServeConfig()
    service = Service(config, api)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    # /docs: the interactive OpenAPI page (its script comes from a CDN; /openapi.json works offline)
    app = FastAPI(title="wsdeploy", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  description="Semantic segmentation with dynamic batching. Errors: "
                  '{"error": {"code", "message"}}.')
    app.state.service = service
    app.add_middleware(_MetricsMiddleware, metrics=service.metrics)

    def error_response(exc: RequestError) -> Any:
        body = {"error": {"code": exc.code, "message": exc.message}}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> Any:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        # routing's own answers (404 unknown path, 405 wrong method) in the documented form
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: f"no endpoint {request.url.path}; see /docs",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        return error_response(RequestError(exc.status_code, codes.get(exc.status_code, "http_error"), message,
                                           headers=headers or None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> Any:
        logger.exception("unhandled error on %s", request.url.path)
        return error_response(RequestError(500, "internal", f"{type(exc).__name__}: {exc}"))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> Any:
        service.check_ready()
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics() -> Any:
        body, media_type = service.metrics.render()
        return Response(body, media_type=media_type)

    @app.get("/v1/model")
    async def model(request: Request) -> Any:
        service.check_api_key(request.headers.get("authorization"))
        service.check_ready()
        return {
            "card": service.api.card,
            "serving": {
                "version": __version__,
                "device": str(service.api.model.device),
                "max_batch_size": config.max_batch_size,
                "batch_timeout": config.batch_timeout,
                "max_queue": config.max_queue,
                "max_body_bytes": config.max_body_bytes,
                "max_pixels": config.max_pixels,
                "crf": config.crf,
                "formats": list(FORMATS),
            },
        }

    @app.post("/v1/segment", openapi_extra={"requestBody": {"required": True, "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "string", "format": "binary"}}}},
    }}})
    async def segment(request: Request) -> Any:
        """Segment one image: the raw body or a multipart `image` field. Answer: a PNG of class
        indices (default), JSON (`?format=json`, `rle=1`, `probs=1`, `probs_size=N`) or NPZ."""
        service.check_api_key(request.headers.get("authorization"))
        service.check_ready()
        q = request.query_params
        fmt = negotiate(q.get("format"), request.headers.get("accept"))
        if fmt is None:
            if q.get("format"):
                raise RequestError(400, "bad_format", f"format must be one of {list(FORMATS)}, got {q.get('format')!r}")
            raise RequestError(406, "not_acceptable", "Accept names none of image/png, application/json, application/x-npz")
        want_probs = _flag(q.get("probs"), "probs")
        rle = _flag(q.get("rle"), "rle")
        probs_size = _int_option(q.get("probs_size"), "probs_size", default=64, low=1, high=1024)
        check_upload_headers(request, config.max_body_bytes, RAW_TYPES)  # 415 / 413 before admission
        if not service.batcher.try_admit():
            raise RequestError(503, "queue_full", "too many requests in flight; retry shortly", headers={"Retry-After": "1"})
        try:
            try:
                body = await asyncio.wait_for(
                    read_image_body(request, config.max_body_bytes, RAW_TYPES), config.body_timeout
                )
            except asyncio.TimeoutError:
                raise RequestError(408, "body_timeout", f"the upload took over {config.body_timeout} s") from None
            if body is None:  # the client went away while uploading
                return Response(status_code=499)
            image = await run_in_threadpool(service.api.decode_request, body)
            del body
            work = SegmentRequest(image=image, return_probs=want_probs and fmt != "png")
            try:
                seg = await _unless_disconnected(service.batcher.submit(work), request)
            except Exception as exc:  # noqa: BLE001 - the batch failed; logged by the batcher
                raise RequestError(500, "inference_failed", f"{type(exc).__name__}: {exc}") from None
            if seg is None:
                return Response(status_code=499)
            out, media_type = await run_in_threadpool(service.api.encode_response, seg, fmt, rle=rle, probs_size=probs_size)
        finally:
            service.batcher.release()
        return Response(out, media_type=media_type)

    return app


async def _unless_disconnected(work: Any, request: Any) -> Any:
    """Await `work`; if the client disconnects first, cancel it (its batch skips it) -> None."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    gone = False
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():  # the client left, or this handler itself was cancelled
            gone = True
            task.cancel()
    if gone:
        logger.info("client disconnected while its request was queued")
        return None
    return task.result()


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("0", "false", "no", ""):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    raise RequestError(400, "bad_option", f"{name} must be true/false or 1/0, got {value!r}")


def _int_option(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise RequestError(400, "bad_option", f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return number


class _MetricsMiddleware:
    """Counts every HTTP response by endpoint and status, and times it (pure ASGI)."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = 500
        t0 = time.perf_counter()

        async def send_and_record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - t0)
