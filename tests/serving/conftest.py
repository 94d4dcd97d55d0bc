"""Shared fixtures: a tiny random checkpoint, test images, an in-process app with its lifespan."""
from __future__ import annotations

import asyncio
import contextlib
import time

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason='the serve extra is not installed: pip install "wsdeploy[serve]"')
pytest.importorskip("uvicorn", reason='the serve extra is not installed: pip install "wsdeploy[serve]"')
pytest.importorskip("prometheus_client", reason='the serve extra is not installed: pip install "wsdeploy[serve]"')
pytest.importorskip("python_multipart", reason='the serve extra is not installed: pip install "wsdeploy[serve]"')
pytest.importorskip("httpx", reason='the test extra is not installed: pip install "wsdeploy[test]"')

import httpx  # noqa: E402
from wsdeploy.serving import ServeConfig, create_app  # noqa: E402

import wsdeploy  # noqa: E402
from wsdeploy.checkpoint import ModelCard, save_checkpoint  # noqa: E402
from wsdeploy.models import build_model  # noqa: E402

CLASSES = ["background", "red", "green"]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    card = ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 16}, classes=CLASSES)
    model = build_model(card.arch, card.num_classes, **card.arch_kwargs)
    with torch.no_grad():  # non-trivial BN statistics so labels vary across pixels
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("serving") / "model.pt"
    save_checkpoint(path, model, card)
    return path


@pytest.fixture(scope="session")
def segmenter(checkpoint):
    return wsdeploy.load(checkpoint, device="cpu")


def make_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), (0, 0), 2)


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image[:, :, ::-1])
    assert ok
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def small_config(checkpoint, **overrides) -> ServeConfig:
    settings = dict(model=str(checkpoint), device="cpu", warmup_size=(32, 32), max_batch_size=4)
    settings.update(overrides)
    return ServeConfig(**settings)


@contextlib.asynccontextmanager
async def running_app(config: ServeConfig, *, api=None, wait_ready: bool = True, timeout: float = 30.0):
    """The app with its lifespan running, and an httpx client talking to it in process."""
    app = create_app(config, api=api)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            deadline = time.monotonic() + timeout
            while wait_ready and not app.state.service.ready:
                if app.state.service.setup_error or time.monotonic() > deadline:
                    raise RuntimeError(f"app not ready: {app.state.service.setup_error}")
                await asyncio.sleep(0.02)
            yield app, client


def run(coro):
    return asyncio.run(coro)


def assert_same_labels(labels: np.ndarray, segmenter, image: np.ndarray, tie: float = 1e-5) -> None:
    """`labels` equal the in-process answer, except at float ties (top-2 probabilities closer than
    `tie`), which a different batch size may tip either way."""
    ref = segmenter.segment(image, return_probs=True)
    top2 = np.sort(ref.probs, axis=0)[-2:]
    differ = labels != ref.labels
    assert labels.shape == ref.labels.shape
    assert not (differ & (top2[1] - top2[0] >= tie)).any(), f"{int(differ.sum())} pixels differ beyond float ties"
