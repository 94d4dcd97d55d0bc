"""The app in process (httpx ASGI transport, lifespan running): endpoints, formats, errors, API key."""
from __future__ import annotations

import asyncio
import json
import struct
import threading
import zlib

import numpy as np
import pytest
from wsdeploy.serving.formats import decode_npz

from tests.serving.conftest import (
    CLASSES,
    assert_same_labels,
    decode_png,
    make_image,
    png_bytes,
    run,
    running_app,
    small_config,
)

PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def image():
    return make_image(48, 64, seed=3)


def _huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming a huge size (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


def test_endpoints_and_png_answer_match_in_process(checkpoint, segmenter, image):
    expected = segmenter.segment(image).labels

    async def go():
        async with running_app(small_config(checkpoint)) as (app, c):
            assert (await c.get("/healthz")).json() == {"status": "alive"}
            assert (await c.get("/readyz")).status_code == 200
            info = (await c.get("/v1/model")).json()
            assert info["card"]["classes"] == CLASSES and info["serving"]["max_batch_size"] == 4
            raw = await c.post("/v1/segment", content=png_bytes(image), headers=PNG)
            multi = await c.post("/v1/segment", files={"image": ("x.png", png_bytes(image), "image/png")})
            octet = await c.post("/v1/segment", content=png_bytes(image), headers={"content-type": "application/octet-stream"})
            metrics = (await c.get("/metrics")).text
            return raw, multi, octet, metrics

    raw, multi, octet, metrics = run(go())
    for r in (raw, multi, octet):
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        np.testing.assert_array_equal(decode_png(r.content), expected)
    assert 'wsdeploy_requests_total{endpoint="/v1/segment",status="200"} 3.0' in metrics
    for name in ("wsdeploy_request_seconds_bucket", "wsdeploy_batch_size_count", "wsdeploy_queue_depth",
                 "wsdeploy_requests_in_flight"):
        assert name in metrics


def test_json_summary_rle_and_probs(checkpoint, segmenter, image):
    expected = segmenter.segment(image, return_probs=True)

    async def go():
        async with running_app(small_config(checkpoint)) as (_, c):
            by_accept = await c.post("/v1/segment?rle=1&probs=1&probs_size=16", content=png_bytes(image),
                                     headers={**PNG, "accept": "application/json"})
            by_query = await c.post("/v1/segment?format=json", content=png_bytes(image), headers=PNG)
            npz = await c.post("/v1/segment?format=npz&probs=true", content=png_bytes(image), headers=PNG)
            return by_accept, by_query, npz

    by_accept, by_query, npz = run(go())
    assert by_accept.headers["content-type"] == "application/json"
    doc = by_accept.json()
    assert (doc["height"], doc["width"], doc["classes"]) == (48, 64, CLASSES)
    assert sum(s["pixels"] for s in doc["segments"]) == 48 * 64
    for s in doc["segments"]:
        mask = expected.labels == s["id"]
        assert s["pixels"] == mask.sum() and s["class"] == CLASSES[s["id"]]
        ys, xs = np.nonzero(mask)
        assert s["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        counts = s["rle"]["counts"]  # COCO: column-major, zeros first
        decoded = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool).reshape(64, 48).T
        np.testing.assert_array_equal(decoded, mask)
    assert doc["probs"]["shape"] == [3, 12, 16]
    np.testing.assert_allclose(np.asarray(doc["probs"]["data"]).sum(0), 1.0, atol=1e-3)
    assert "probs" not in by_query.json() and "rle" not in by_query.json()["segments"][0]
    labels, classes, probs = decode_npz(npz.content)
    np.testing.assert_array_equal(labels, expected.labels)
    np.testing.assert_allclose(probs, expected.probs, atol=1e-6)
    assert classes == CLASSES


def test_every_error_status_is_json_and_the_next_request_is_served(checkpoint, segmenter, image):
    good = png_bytes(image)
    expected = segmenter.segment(image).labels
    cases = [
        (415, "unsupported_media_type", dict(content=good, headers={"content-type": "text/plain"})),
        (415, "unsupported_media_type", dict(json={"image": "x"})),
        (400, "invalid_image", dict(content=b"not an image at all", headers=PNG)),
        (400, "invalid_image", dict(content=good[: len(good) // 2], headers=PNG)),  # truncated
        (400, "empty_body", dict(content=b"", headers=PNG)),
        (400, "no_file_part", dict(data={"field": "value"}, files={})),
        (413, "body_too_large", dict(content=b"\x89PNG" + b"\x00" * 70_000, headers=PNG)),
        (413, "too_many_pixels", dict(content=_huge_png_header(100_000, 100_000), headers=PNG)),
        (406, "not_acceptable", dict(content=good, headers={**PNG, "accept": "text/html"})),
        (400, "bad_format", dict(content=good, headers=PNG, params={"format": "gif"})),
        (400, "bad_option", dict(content=good, headers=PNG, params={"probs": "maybe"})),
    ]

    async def go():
        async with running_app(small_config(checkpoint, max_body_bytes=65_536, max_pixels=128 * 128)) as (_, c):
            out = []
            for status, code, kwargs in cases:
                if "data" in kwargs:  # multipart with only a text field
                    r = await c.post("/v1/segment", data=kwargs["data"], files={"dummy": (None, "x")})
                else:
                    r = await c.post("/v1/segment", **kwargs)
                after = await c.post("/v1/segment", content=good, headers=PNG)
                out.append((status, code, r, after))
            return out

    for status, code, r, after in run(go()):
        assert r.status_code == status, (code, r.text)
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
        assert after.status_code == 200
        np.testing.assert_array_equal(decode_png(after.content), expected)


def test_api_key_guards_v1_but_not_probes(checkpoint, image):
    async def go():
        async with running_app(small_config(checkpoint, api_key="s3cret")) as (_, c):
            none = await c.post("/v1/segment", content=png_bytes(image), headers=PNG)
            wrong = await c.get("/v1/model", headers={"authorization": "Bearer nope"})
            basic = await c.get("/v1/model", headers={"authorization": "Basic s3cret"})
            right = await c.post("/v1/segment", content=png_bytes(image), headers={**PNG, "authorization": "Bearer s3cret"})
            probes = [(await c.get(p)).status_code for p in ("/healthz", "/readyz", "/metrics")]
            return none, wrong, basic, right, probes

    none, wrong, basic, right, probes = run(go())
    for r in (none, wrong, basic):
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
    assert right.status_code == 200 and probes == [200, 200, 200]


class _SlowAPI:
    """A stand-in for SegmentationAPI whose setup and predict wait on events (no model)."""

    def __init__(self, real):
        self.real = real
        self.setup_gate = threading.Event()
        self.predict_gate = threading.Event()
        self.predict_gate.set()
        self.batches: list[int] = []

    def setup(self, device):
        self.setup_gate.wait(10)
        self.real.setup(device)

    def __call__(self, requests):
        self.predict_gate.wait(10)
        self.batches.append(len(requests))
        return self.real(requests)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_not_ready_is_503_until_setup_is_done(checkpoint, image):
    from wsdeploy.serving.api import SegmentationAPI

    config = small_config(checkpoint)
    api = _SlowAPI(SegmentationAPI(config))

    async def go():
        async with running_app(config, api=api, wait_ready=False) as (app, c):
            early = [await c.get("/readyz"), await c.post("/v1/segment", content=png_bytes(image), headers=PNG),
                     await c.get("/healthz")]
            api.setup_gate.set()
            while not app.state.service.ready:
                await asyncio.sleep(0.02)
            late = [await c.get("/readyz"), await c.post("/v1/segment", content=png_bytes(image), headers=PNG)]
            return early, late

    early, late = run(go())
    assert [r.status_code for r in early] == [503, 503, 200]
    assert early[0].headers["retry-after"] == "1" and early[0].json()["error"]["code"] == "not_ready"
    assert [r.status_code for r in late] == [200, 200]


def test_batches_form_under_concurrency_and_a_full_queue_answers_503(checkpoint, segmenter):
    from wsdeploy.serving.api import SegmentationAPI

    config = small_config(checkpoint, max_batch_size=4, max_queue=6, batch_timeout=0.5)
    api = _SlowAPI(SegmentationAPI(config))
    api.setup_gate.set()
    images = [make_image(40 + 8 * (i % 2), 56, seed=i) for i in range(6)]  # two sizes, grouped

    async def go():
        async with running_app(config, api=api) as (app, c):
            api.batches.clear()
            api.predict_gate.clear()  # hold the first batch so the queue fills up
            posts = [asyncio.ensure_future(c.post("/v1/segment", content=png_bytes(im), headers=PNG)) for im in images]
            while app.state.service.batcher.admitted < len(images):
                await asyncio.sleep(0.01)
            refused = await c.post("/v1/segment", content=png_bytes(images[0]), headers=PNG)
            api.predict_gate.set()
            answers = await asyncio.gather(*posts)
            metrics = (await c.get("/metrics")).text
            return refused, answers, metrics

    refused, answers, metrics = run(go())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "queue_full"
    assert max(api.batches) == 4 and sum(api.batches) == 6  # batch size > 1 observed
    for im, r in zip(images, answers):
        assert r.status_code == 200
        assert_same_labels(decode_png(r.content), segmenter, im)
    assert 'wsdeploy_batch_size_bucket{le="4.0"} 2.0' in metrics or "wsdeploy_batch_size_sum 6.0" in metrics


def test_a_failing_batch_is_500_and_the_service_recovers(checkpoint, image):
    from wsdeploy.serving.api import SegmentationAPI

    config = small_config(checkpoint)
    api = _SlowAPI(SegmentationAPI(config))
    api.setup_gate.set()

    async def go():
        async with running_app(config, api=api) as (_, c):
            first = await c.post("/v1/segment", content=png_bytes(image), headers=PNG)
            api.predict_gate = _Raising()
            second = await c.post("/v1/segment", content=png_bytes(image), headers=PNG)
            api.predict_gate = _Open()
            third = await c.post("/v1/segment", content=png_bytes(image), headers=PNG)
            return first, second, third

    first, second, third = run(go())
    assert first.status_code == 200 and third.status_code == 200
    assert second.status_code == 500 and second.json()["error"]["code"] == "inference_failed"
    assert "RuntimeError: boom" in second.json()["error"]["message"]


class _Raising:
    def wait(self, timeout):
        raise RuntimeError("boom")


class _Open:
    def wait(self, timeout):
        return True


def test_json_error_bodies_are_valid_json_for_unknown_routes(checkpoint):
    async def go():
        async with running_app(small_config(checkpoint)) as (_, c):
            return await c.get("/nope"), await c.get("/v1/segment")

    missing, wrong_method = run(go())
    assert missing.status_code == 404 and json.loads(missing.text)
    assert wrong_method.status_code == 405
