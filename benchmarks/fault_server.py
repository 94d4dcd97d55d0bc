"""The server side of `benchmarks/serve_faults.py`: a fault-injecting `wsdeploy serve` subprocess,
a handle on it, a stdlib HTTP client and the in-process answers to compare with.

    python benchmarks/fault_server.py --model M --port P [--fail-batches 5,9] [--settings JSON]

serves `M` on 127.0.0.1:P with 1 torch thread; the API raises `RuntimeError` on the batches
numbered in `--fail-batches` (1-based), like a backend error. `--settings` holds extra
`ServeConfig` fields as JSON.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TIE = 1e-5  # top-2 probabilities closer than this: a float tie, either label is right

__all__ = ["Expected", "Server", "default_model", "is_error_json", "request", "segment"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fail-batches", default="", help="comma list of 1-based batch numbers that raise")
    p.add_argument("--settings", default="{}", help="extra ServeConfig fields as JSON")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    from wsdeploy.serving import ServeConfig, serve
    from wsdeploy.serving.api import SegmentationAPI

    torch.set_num_threads(1)
    fail = {int(b) for b in args.fail_batches.split(",") if b}

    class FaultyAPI(SegmentationAPI):
        """Raises on the batches numbered in --fail-batches (1-based), like a backend error."""

        batches = 0

        def predict(self, images: list[np.ndarray], *, return_probs: bool) -> list[Any]:
            FaultyAPI.batches += 1
            if FaultyAPI.batches in fail:
                raise RuntimeError(f"injected fault in batch {FaultyAPI.batches} of {len(images)} images")
            return super().predict(images, return_probs=return_probs)

    config = ServeConfig(model=args.model, device="cpu", torch_threads=1, warmup_size=(32, 32),
                         **json.loads(args.settings))
    serve(config, port=args.port, log_level="warning", graceful_timeout=20, api=FaultyAPI(config))



class Server:
    """A `--serve` subprocess on a free loopback port."""

    def __init__(self, model: str, *, fail_batches: str = "", **settings: Any) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--model", model, "--port", str(self.port),
               "--fail-batches", fail_batches, "--settings", json.dumps(settings)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log = b""
        deadline = time.monotonic() + 120
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.stop()[-2000:]}")
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            return request(self.port, "GET", "/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def seconds_to_ready(self, limit: float = 10.0) -> float:
        t0 = time.monotonic()
        while not self.ready():
            if time.monotonic() - t0 > limit:
                return float("inf")
            time.sleep(0.01)
        return round(time.monotonic() - t0, 3)

    def rss_mb(self, field: str = "VmRSS") -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def metric(self, name: str) -> float:
        text = request(self.port, "GET", "/metrics")[2].decode()
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log = self.proc.stdout.read() if self.proc.stdout else b""
        return self.log.decode(errors="replace")


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def segment(port: int, png: bytes, **kw: Any) -> tuple[int, dict, bytes]:
    return request(port, "POST", "/v1/segment", png, {"Content-Type": "image/png"}, **kw)


def is_error_json(status: int, body: bytes, code: str | None = None) -> bool:
    try:
        err = json.loads(body)["error"]
        return isinstance(err["message"], str) and (code is None or err["code"] == code)
    except (ValueError, KeyError, TypeError):
        return False


class Expected:
    """In-process answers: labels and where the argmax is a float tie."""

    def __init__(self, model: str, images: list[np.ndarray]) -> None:
        import wsdeploy

        seg = wsdeploy.load(model, device="cpu")
        self.pngs = [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in images]
        self.labels, self.ties = [], []
        for im in images:
            out = seg.segment(im, return_probs=True)
            top2 = np.sort(out.probs, axis=0)[-2:]
            self.labels.append(out.labels)
            self.ties.append(top2[1] - top2[0] < TIE)

    def correct(self, i: int, body: bytes) -> bool:
        got = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
        if got is None or got.shape != self.labels[i].shape:
            return False
        return not ((got != self.labels[i]) & ~self.ties[i]).any()


def default_model(folder: Path) -> str:
    """A small random LR-ASPP checkpoint (3 classes, BatchNorm statistics varied so labels vary)."""
    import torch

    from wsdeploy.checkpoint import ModelCard, save_checkpoint
    from wsdeploy.models import build_model

    torch.manual_seed(0)
    card = ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 16}, classes=["background", "red", "green"])
    model = build_model(card.arch, card.num_classes, **card.arch_kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    path = folder / "faults_model.pt"
    save_checkpoint(path, model, card)
    return str(path)


if __name__ == "__main__":
    main()
