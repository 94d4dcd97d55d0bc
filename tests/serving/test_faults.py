"""Faults against a real uvicorn on loopback, at test scale (benchmarks/serve_faults.py has the figures).

Disconnects mid-response, a slow body next to normal clients, a burst beyond the queue, a backend
that raises on one batch, the body limit before the body is read, the API key's comparison.
"""
from __future__ import annotations

import concurrent.futures
import hmac
import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
from wsdeploy.serving import create_app
from wsdeploy.serving.api import SegmentationAPI

from tests.serving.conftest import decode_png, make_image, png_bytes, run, running_app, small_config
from tests.serving.test_server import _free_socket, _wait_ready

pytestmark = pytest.mark.slow


class FaultyAPI(SegmentationAPI):
    """Raises on the batch numbers in `fail` (1-based) and records every batch's size."""

    def __init__(self, config):
        super().__init__(config)
        self.fail: set[int] = set()
        self.sizes: list[int] = []

    def predict(self, images, *, return_probs):
        self.sizes.append(len(images))
        if len(self.sizes) in self.fail:
            raise RuntimeError(f"injected fault in batch {len(self.sizes)}")
        return super().predict(images, return_probs=return_probs)


@pytest.fixture(scope="module")
def server(checkpoint):
    """(port, app, api): max_batch 2, max_queue 4, 1 s body timeout."""
    config = small_config(checkpoint, max_batch_size=2, max_queue=4, batch_timeout=0.05, body_timeout=1.0,
                          max_body_bytes=100_000)
    api = FaultyAPI(config)
    app = create_app(config, api=api)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    sock = _free_socket()
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    from wsdeploy.serving import Client

    _wait_ready(Client(f"http://127.0.0.1:{port}"))
    yield port, app, api
    srv.should_exit = True
    thread.join(30)
    sock.close()


def _post(port, body, path="/v1/segment", headers=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers or {"Content-Type": "image/png"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _idle(app, timeout=10.0):
    deadline = time.monotonic() + timeout
    while app.state.service.batcher.admitted and time.monotonic() < deadline:
        time.sleep(0.02)
    return app.state.service.batcher.admitted == 0


def test_a_client_gone_mid_response_leaves_the_server_ready(server, segmenter):
    port, app, _ = server
    big = png_bytes(np.zeros((160, 160, 3), np.uint8))  # a 3 x 160 x 160 float32 answer: ~300 kB
    head = (b"POST /v1/segment?format=npz&probs=1 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\n\r\n" % len(big))
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(head + big)
        assert s.recv(64).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset, not FIN
        s.close()
    assert _idle(app)
    image = make_image(40, 56, seed=3)
    status, _, body = _post(port, png_bytes(image))
    assert status == 200 and (decode_png(body) == segmenter.segment(image).labels).all()


def test_a_slow_body_gets_408_while_other_clients_are_served(server):
    port, app, _ = server
    replies: list[bytes] = []

    def trickle():
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 900\r\n\r\n")
        s.settimeout(0.25)
        reply, t0 = b"", time.monotonic()
        while b"body_timeout" not in reply and time.monotonic() - t0 < 8:
            try:
                s.sendall(b"\x00")  # 4 bytes a second
                reply += s.recv(4096)
            except (socket.timeout, OSError):
                pass
        s.close()
        replies.append(reply)

    slow = [threading.Thread(target=trickle) for _ in range(2)]
    for t in slow:
        t.start()
    time.sleep(0.1)
    answered_while_slow = 0
    for seed in range(3):
        status, _, _ = _post(port, png_bytes(make_image(seed=seed)))
        assert status == 200
        answered_while_slow += any(t.is_alive() for t in slow)
    for t in slow:
        t.join()
    assert answered_while_slow >= 1, "normal requests waited for the slow uploads"
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "body_timeout"
    assert _idle(app)


def test_a_burst_beyond_the_queue_gets_503_with_retry_after(server, segmenter):
    port, app, _ = server
    image = make_image(seed=7)
    body = png_bytes(image)
    expected = segmenter.segment(image).labels
    barrier = threading.Barrier(24)

    def one(_):
        barrier.wait()
        return _post(port, body)

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(one, range(24)))
    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
    for status, headers, data in answers:
        if status == 503:
            assert headers["retry-after"] == "1" and json.loads(data)["error"]["code"] == "queue_full"
        else:
            assert (decode_png(data) == expected).all()
    assert _idle(app)
    assert _post(port, body)[0] == 200  # ready again at once


def test_a_backend_error_fails_only_its_batch(server, segmenter):
    port, app, api = server
    images = [make_image(seed=20 + i) for i in range(4)]  # = max_queue: none is refused
    api.fail = {len(api.sizes) + 1}  # the next batch raises
    failing_batch = len(api.sizes) + 1
    barrier = threading.Barrier(len(images))

    def one(i):
        barrier.wait()
        return _post(port, png_bytes(images[i]))

    with concurrent.futures.ThreadPoolExecutor(len(images)) as pool:
        answers = list(pool.map(one, range(len(images))))
    api.fail = set()
    failed = [i for i, (s, _, _) in enumerate(answers) if s == 500]
    assert len(failed) == api.sizes[failing_batch - 1], (failed, api.sizes)
    for i, (status, _, data) in enumerate(answers):
        if status == 500:
            err = json.loads(data)["error"]
            assert err["code"] == "inference_failed" and "injected fault" in err["message"]
        else:
            assert status == 200 and (decode_png(data) == segmenter.segment(images[i]).labels).all()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/readyz")
    assert conn.getresponse().status == 200
    conn.close()


def test_the_body_limit_applies_before_the_body_is_read(server):
    port, app, _ = server
    for head in (
        b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n",
        b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"30000\r\n" + bytes(0x30000) + b"\r\n",
    ):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(head)  # the 1 GB body never comes: the answer must not wait for it
        reply = b""
        while b"body_too_large" not in reply and (chunk := s.recv(4096)):
            reply += chunk
        s.close()
        assert reply.startswith(b"HTTP/1.1 413") and b"body_too_large" in reply
    assert _idle(app)


def test_the_api_key_is_compared_in_constant_time(checkpoint, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    async def go():
        async with running_app(small_config(checkpoint, api_key="s3cret")) as (_, c):
            wrong = await c.get("/v1/model", headers={"Authorization": "Bearer s3creX"})
            right = await c.get("/v1/model", headers={"Authorization": "Bearer s3cret"})
            return wrong.status_code, right.status_code

    assert run(go()) == (401, 200)
    assert calls == [(b"s3creX", b"s3cret"), (b"s3cret", b"s3cret")]
