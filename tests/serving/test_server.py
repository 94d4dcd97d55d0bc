"""A real uvicorn on a free loopback port: the Client, concurrency, disconnects, graceful shutdown."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from wsdeploy.serving import Client, InvalidRequestError, ServingError, create_app

from tests.serving.conftest import CLASSES, assert_same_labels, make_image, png_bytes, small_config

pytestmark = pytest.mark.slow


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _wait_admitted(url: str, futures: list[concurrent.futures.Future], timeout: float) -> None:
    """Until every request is in flight on the server (its `wsdeploy_requests_in_flight` gauge) or
    answered: a fixed sleep raced the client threads on a loaded CPU, and a request that reached
    the server after SIGTERM was rightly refused with 503 draining."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        in_flight = next(float(line.split()[-1]) for line in text.splitlines()
                         if line.startswith("wsdeploy_requests_in_flight"))
        if in_flight + sum(f.done() for f in futures) >= len(futures):
            return
        time.sleep(0.02)
    raise TimeoutError(f"the requests were not all admitted within {timeout} s")


def _wait_ready(client: Client, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not client.ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"server at {client.url} not ready after {timeout} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def live(checkpoint):
    """(base url, app) of a uvicorn server running in a thread, with an API key."""
    config = small_config(checkpoint, max_batch_size=8, batch_timeout=0.05, api_key="k3y", max_body_bytes=200_000,
                          body_timeout=1.0)
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    sock = _free_socket()
    url = "http://127.0.0.1:%d" % sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait_ready(Client(url))
    yield url, app
    server.should_exit = True
    thread.join(30)
    sock.close()


def test_client_returns_the_in_process_segmentation(live, segmenter, tmp_path):
    url, _ = live
    client = Client(url, api_key="k3y")
    image = make_image(50, 70, seed=5)
    path = tmp_path / "im.png"
    path.write_bytes(png_bytes(image))
    expected = segmenter.segment(image, return_probs=True)
    for source in (image, path, str(path), png_bytes(image)):
        seg = client.segment(source)
        assert seg.classes == CLASSES and seg.probs is None and seg.labels.dtype == np.uint8
        np.testing.assert_array_equal(seg.labels, expected.labels)
    with_probs = client.segment(image, return_probs=True)
    np.testing.assert_array_equal(with_probs.labels, expected.labels)
    np.testing.assert_allclose(with_probs.probs, expected.probs, atol=1e-6)
    summary = client.summary(image, rle=True)
    assert sum(s["pixels"] for s in summary["segments"]) == 50 * 70
    assert client.info()["card"]["classes"] == CLASSES


def test_client_errors(live):
    url, _ = live
    with pytest.raises(ServingError) as unauthorized:
        Client(url).segment(make_image())
    assert unauthorized.value.status == 401
    client = Client(url, api_key="k3y")
    with pytest.raises(InvalidRequestError) as bad:
        client.segment(b"definitely not an image")
    assert bad.value.status == 400 and isinstance(bad.value, ValueError)
    with pytest.raises(InvalidRequestError) as big:
        client.segment(b"\x89PNG" + bytes(300_000))
    assert big.value.status == 413
    assert client.segment(make_image()).labels.shape == (48, 64)


def test_concurrent_clients_get_batched_correct_answers(live, segmenter):
    url, app = live
    client = Client(url, api_key="k3y")
    images = [make_image(48 + 16 * (i % 2), 64, seed=10 + i) for i in range(16)]
    before = app.state.service.batcher.stats.max_batch_seen
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client.segment, images))
    for image, seg in zip(images, results):
        assert_same_labels(seg.labels, segmenter, image)  # batched: equal up to float ties
    stats = app.state.service.batcher.stats
    assert max(before, stats.max_batch_seen) > 1, "no batch larger than 1 formed under 16 concurrent clients"


def _raw_request(url: str, head: bytes, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head + body)
    return sock


def test_server_survives_clients_that_disconnect(live, segmenter):
    url, app = live
    image = make_image(48, 64, seed=2)
    body = png_bytes(image)
    head = (
        b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
        b"Content-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    _raw_request(url, head, body[: len(body) // 3]).close()  # gone mid-upload
    for _ in range(3):
        _raw_request(url, head, body).close()  # gone while queued or running
    time.sleep(0.3)
    seg = Client(url, api_key="k3y").segment(image)
    np.testing.assert_array_equal(seg.labels, segmenter.segment(image).labels)
    deadline = time.monotonic() + 10
    while app.state.service.batcher.admitted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.service.batcher.admitted == 0  # every admission released
    metrics = Client(url)._call("GET", "/metrics")[0].decode()
    assert 'status="499"' in metrics


def _serve_command() -> list[str]:
    """`-m wsdeploy serve` once the command is registered, else the command module called directly."""
    from wsdeploy.cli.main import COMMANDS

    if "serve" in COMMANDS:
        return ["-m", "wsdeploy", "serve"]
    code = ("import argparse, sys; from wsdeploy.cli import serve; p = argparse.ArgumentParser(); "
            "serve.add_arguments(p); sys.exit(serve.run(p.parse_args()))")
    return ["-c", code]


def test_a_stalled_upload_times_out_with_408(live):
    url, app = live
    head = (b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
            b"Content-Type: image/png\r\nContent-Length: 5000\r\n\r\n")
    reply = b""
    with _raw_request(url, head, b"\x89PNG") as sock:
        while b"body_timeout" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408") and b"body_timeout" in reply
    assert app.state.service.batcher.admitted == 0


def test_graceful_shutdown_finishes_in_flight_requests(checkpoint, segmenter):
    """`wsdeploy serve` in a subprocess, SIGTERM while requests wait in a 1.5 s batch window."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [str(checkpoint), "--port", str(port), "--device", "cpu", "--max-batch", "8", "--max-delay-ms", "1500",
            "--log-level", "warning"]
    proc = subprocess.Popen([sys.executable, *_serve_command(), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = Client(f"http://127.0.0.1:{port}", timeout=30)
        _wait_ready(client, timeout=90, proc=proc)
        images = [make_image(48, 64, seed=20 + i) for i in range(3)]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(client.segment, im) for im in images]
            _wait_admitted(client.url, futures, timeout=30)  # every request admitted (or already answered)
            proc.send_signal(signal.SIGTERM)
            results = [f.result(timeout=30) for f in futures]
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown, so -SIGTERM is normal
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        log = proc.stdout.read().decode()
        assert "Traceback" not in log and "ERROR" not in log, log
        for image, seg in zip(images, results):
            assert_same_labels(seg.labels, segmenter, image)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
