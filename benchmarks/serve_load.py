"""Load test of `wsdeploy serve` on loopback: dynamic batching vs `--max-batch 1`.

One `wsdeploy serve` subprocess per server setting, each on a free 127.0.0.1 port (an idle one
costs no CPU). For each concurrency level C the settings take turns (`--repeats` times, the order
alternating, so drift on a shared machine hits both alike): C client threads send requests until
`--requests` were sent or `--time-limit` seconds passed; throughput is the median over repeats.
A fraction `--invalid` of the requests are invalid (corrupt bytes -> 400, text/plain -> 415, a
PNG header claiming 100k x 100k pixels -> 413); the rest are synthetic scenes of `--size`
pixels, whose answers are compared with the in-process `wsdeploy.load(model).segment` (same
torch thread count): equal labels, except that a pixel whose top-2 probabilities differ by less
than 1e-5 (a float tie, which batch size or thread count can tip either way) may differ; such
answers are counted separately.

Reported per level: throughput of valid answers, p50/p99 latency of valid requests, mean batch
size (from the server's /metrics), answers by status, wrong and lost answers. Writes JSON to
`benchmarks/results/` with the machine, versions and command. Bounded: at most
`--requests` requests and `--time-limit` seconds per run, loopback only.

    python benchmarks/serve_load.py --size 256 --concurrency 1 4 16 64 --requests 192
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model file (default: the bundled default model)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--requests", type=int, default=192, help="requests per level, valid + invalid (default 192)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per level (default 60)")
    p.add_argument("--invalid", type=float, default=0.1, help="fraction of invalid requests (default 0.1)")
    p.add_argument("--max-batch", type=int, nargs="+", default=[16, 1], help="server settings to compare")
    p.add_argument("--max-delay-ms", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None, help="server torch threads (default: torch's choice)")
    p.add_argument("--images", type=int, default=8, help="distinct test images (default 8)")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per cell, alternating the settings (a shared machine drifts); median throughput")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load_cpu.json"))
    return p.parse_args()


def _huge_png_header() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + bytes(64)


INVALID = [  # (body, content type, expected status)
    (b"this is not an image" * 10, "image/png", 400),
    (b"hello", "text/plain", 415),
    (_huge_png_header(), "image/png", 413),
]


TIE = 1e-5  # a pixel whose top-2 probabilities differ by less is a float tie: either label is right


class Expected:
    """The in-process answer for one image: labels, and where its argmax is a float tie."""

    def __init__(self, labels: np.ndarray, ties: np.ndarray) -> None:
        self.labels, self.ties = labels, ties

    @classmethod
    def of(cls, seg) -> "Expected":
        top2 = np.sort(seg.probs, axis=0)[-2:]  # (2, H, W)
        return cls(seg.labels, (top2[1] - top2[0]) < TIE)

    def check(self, labels: np.ndarray | None) -> tuple[bool, int]:
        """(correct, pixels that differ at float ties): correct = equal except at ties."""
        if labels is None or labels.shape != self.labels.shape:
            return False, 0
        differ = labels != self.labels
        return not (differ & ~self.ties).any(), int(differ.sum())


def make_images(n: int, size: int) -> list[np.ndarray]:
    from wsdeploy.data.synthetic.config import SyntheticConfig
    from wsdeploy.data.synthetic.scene import render_scene

    config = SyntheticConfig(size=size)
    return [render_scene(1000 + i, config=config).image for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, content_type: str, timeout: float = 120.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metrics_batches(base: str) -> tuple[float, float]:
    """(sum, count) of the server's wsdeploy_batch_size histogram."""
    text = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith(("wsdeploy_batch_size_sum", "wsdeploy_batch_size_count")):
            name, value = line.split()
            values[name] = float(value)
    return values.get("wsdeploy_batch_size_sum", 0.0), values.get("wsdeploy_batch_size_count", 0.0)


def start_server(model: str | None, port: int, max_batch: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "wsdeploy", "serve"] + ([model] if model else [])
    cmd += ["--port", str(port), "--device", "cpu", "--max-batch", str(max_batch),
            "--max-delay-ms", str(args.max_delay_ms), "--max-queue", "256", "--log-level", "warning"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    from wsdeploy.cli.main import COMMANDS

    if "serve" not in COMMANDS:  # not registered yet: call the command module directly
        code = ("import argparse, sys; from wsdeploy.cli import serve; p = argparse.ArgumentParser(); "
                "serve.add_arguments(p); sys.exit(serve.run(p.parse_args()))")
        cmd = [sys.executable, "-c", code] + cmd[4:]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if urllib.request.urlopen(base + "/readyz", timeout=5).status == 200:
                return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError("server not ready after 180 s")


def run_level(base: str, concurrency: int, bodies: list[bytes], expected: list[Expected],
              args: argparse.Namespace) -> dict:
    url = base + "/v1/segment"
    every = max(1, round(1 / args.invalid)) if args.invalid > 0 else 0
    lock = threading.Lock()
    counter = {"next": 0}
    records: list[dict] = []
    t_end = time.monotonic() + args.time_limit

    def worker() -> None:
        while True:
            with lock:
                i = counter["next"]
                if i >= args.requests or time.monotonic() > t_end:
                    return
                counter["next"] += 1
            invalid = every and i % every == every - 1
            if invalid:
                body, ctype, want = INVALID[(i // every) % len(INVALID)]
            else:
                body, ctype, want = bodies[i % len(bodies)], "image/png", 200
            t0 = time.perf_counter()
            try:
                status, data = post(url, body, ctype)
            except OSError as exc:  # reset / refused / timeout: a lost answer
                records.append({"valid": not invalid, "status": f"lost:{type(exc).__name__}", "ok": False})
                continue
            latency = time.perf_counter() - t0
            ok = status == want
            tie_flips = 0
            if ok and not invalid:
                labels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                ok, tie_flips = expected[i % len(expected)].check(labels)
            records.append({"valid": not invalid, "status": status, "ok": ok, "latency": latency, "ties": tie_flips})

    s0, c0 = metrics_batches(base)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    s1, c1 = metrics_batches(base)
    return {"records": records, "seconds": seconds, "batch_sum": s1 - s0, "batch_count": c1 - c0}


def summarize(concurrency: int, runs: list[dict]) -> dict:
    """One table row from the repeats of one (setting, concurrency) cell."""
    records = [r for run in runs for r in run["records"]]
    valid = [r for r in records if r["valid"]]
    rates = sorted(sum(r["valid"] and r["status"] == 200 for r in run["records"]) / run["seconds"] for run in runs)
    latencies = np.array([r["latency"] for r in valid if r["status"] == 200]) * 1000
    by_status: dict[str, int] = {}
    for r in records:
        by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
    batch_count = sum(run["batch_count"] for run in runs)
    return {
        "concurrency": concurrency,
        "repeats": len(runs),
        "requests": len(records),
        "valid": len(valid),
        "invalid": len(records) - len(valid),
        "seconds": round(sum(run["seconds"] for run in runs), 2),
        "throughput_valid_rps": round(float(np.median(rates)), 2),  # median over repeats
        "throughput_valid_rps_each": [round(x, 2) for x in rates],
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies.size else None,
        "mean_batch_size": round(sum(run["batch_sum"] for run in runs) / batch_count, 2) if batch_count else None,
        "status_counts": dict(sorted(by_status.items())),
        "failed_valid": sum(1 for r in valid if r["status"] != 200),
        "wrong_valid": sum(1 for r in valid if r["status"] == 200 and not r["ok"]),
        "valid_with_tie_flips": sum(1 for r in valid if r["ok"] and r.get("ties")),
        "wrong_invalid": sum(1 for r in records if not r["valid"] and not r["ok"]),
        "lost": sum(1 for r in records if str(r["status"]).startswith("lost")),
    }


def markdown_table(results: list[dict]) -> str:
    """The README table: one row per (concurrency, setting)."""
    lines = [
        "| clients | --max-batch | valid answers/s | p50 ms | p99 ms | mean batch | answers by status "
        "| wrong / lost / tie-flip |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in sorted(results, key=lambda r: (r["concurrency"], -r["max_batch"])):
        statuses = " ".join(f"{k}:{v}" for k, v in r["status_counts"].items())
        bad = f"{r['wrong_valid'] + r['wrong_invalid']} / {r['lost']} / {r.get('valid_with_tie_flips', 0)}"
        lines.append(f"| {r['concurrency']} | {r['max_batch']} | {r['throughput_valid_rps']} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['mean_batch_size']} | {statuses} | {bad} |")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    import wsdeploy
    from wsdeploy.environment import library_versions, machine_info
    from wsdeploy.runtime import DEFAULT_MODEL_PATH

    model = args.model or (str(DEFAULT_MODEL_PATH) if DEFAULT_MODEL_PATH.is_file() else None)
    if model is None:
        raise SystemExit("no --model given and the bundled default model is missing")
    images = make_images(args.images, args.size)
    bodies = [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in images]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the server's setting: fewer float-tie differences
    reference = wsdeploy.load(model, device="cpu")
    expected = [Expected.of(reference.segment(im, return_probs=True)) for im in images]
    del reference
    servers = {}  # max_batch -> (process, base url); idle servers cost no CPU
    results = []
    try:
        for max_batch in args.max_batch:
            port = free_port()
            servers[max_batch] = (start_server(model, port, max_batch, args), f"http://127.0.0.1:{port}")
        warm = argparse.Namespace(requests=0, time_limit=30, invalid=0)
        for concurrency in args.concurrency:
            runs: dict[int, list[dict]] = {b: [] for b in servers}
            for repeat in range(args.repeats):
                order = list(servers) if repeat % 2 == 0 else list(servers)[::-1]  # alternate against drift
                for max_batch in order:
                    base = servers[max_batch][1]
                    warm.requests = 2 * concurrency
                    run_level(base, concurrency, bodies[:2], expected[:2], warm)  # open the connection path
                    runs[max_batch].append(run_level(base, concurrency, bodies, expected, args))
            for max_batch in servers:
                row = {"max_batch": max_batch, **summarize(concurrency, runs[max_batch])}
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    summary = {}
    for c in args.concurrency:
        rows = {r["max_batch"]: r for r in results if r["concurrency"] == c}
        if len(rows) >= 2 and min(rows) == 1:
            batched = rows[max(rows)]
            summary[f"speedup_at_{c}"] = round(batched["throughput_valid_rps"] / rows[1]["throughput_valid_rps"], 2)
    doc = {
        "benchmark": "serve_load",
        "model": os.path.relpath(model, ROOT) if model.startswith(str(ROOT)) else model,
        "image_size": [args.size, args.size],
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
        "summary": summary,
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "machine": machine_info(),
        "versions": library_versions(("fastapi", "uvicorn", "starlette", "prometheus-client")),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(markdown_table(results))
    print(json.dumps(summary))
    print(f"wrote {args.out}")
    bad = sum(r["failed_valid"] + r["wrong_valid"] + r["wrong_invalid"] + r["lost"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
