"""Fault injection against `wsdeploy serve` on loopback (127.0.0.1 only); the figures as JSON.

Each scenario starts its own server subprocess (`benchmarks/fault_server.py`: `wsdeploy.serving.serve`
with an API that can be told to raise on chosen batches), waits for `/readyz`, injects the fault,
then checks that every accepted request got a right answer or a documented refusal, and that the
server is ready again within 1 s:

    disconnects    clients gone mid-upload, while queued and mid-response (a 1 MB answer, read 1 kB)
    slow_body      clients sending 2 bytes/s get 408 after --body-timeout; a normal client's
                   latency meanwhile, against its latency alone
    burst          10x max_queue clients at once: 200s and 503s with Retry-After and the error JSON;
                   the server's peak RSS against its RSS before
    backend_fault  the API raises on one batch: that batch's requests get 500 + error JSON, the
                   rest are answered, /readyz stays 200
    sigterm        SIGTERM while clients keep sending: every request the server accepted is answered
    soak           --soak-minutes of steady, modest load: RSS growth (after 1 warm-up minute) and
                   the p99 latency of the first and last minutes

Answers are compared with the in-process `wsdeploy.load(model).segment` (labels equal except at
float ties, top-2 probabilities within 1e-5). Clients and servers use 1 torch thread; every loop
is bounded by a request count or a deadline.

    OMP_NUM_THREADS=1 python benchmarks/serve_faults.py                 # all, 10-minute soak
    python benchmarks/serve_faults.py --scenarios burst sigterm --soak-minutes 1 --out /tmp/f.json
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import shlex
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCENARIOS = ("disconnects", "slow_body", "burst", "backend_fault", "sigterm", "soak")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_server import Expected, Server, default_model, is_error_json, segment  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model file (default: a small random LR-ASPP checkpoint)")
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    p.add_argument("--size", type=int, default=96, help="image side (default 96)")
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--soak-rate", type=float, default=4.0, help="requests per second in the soak (default 4)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_faults.json"))
    return p.parse_args()


def _tally(outcomes: list[str]) -> dict[str, int]:
    return {k: outcomes.count(k) for k in sorted(set(outcomes))}


# -- scenarios -------------------------------------------------------------------------------------
def disconnects(model: str, exp: Expected, n: int = 20) -> dict:
    server = Server(model, max_batch_size=4, batch_timeout=0.02)
    try:
        png = exp.pngs[0]
        head = b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
        big = cv2.imencode(".png", np.zeros((512, 512, 3), np.uint8))[1].tobytes()
        kinds = {
            "mid_upload": (head % len(png)) + png[: len(png) // 3],
            "while_queued": (head % len(png)) + png,
            "mid_response": (b"POST /v1/segment?format=npz&probs=1 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(big)) + big,
        }
        for kind, data in kinds.items():
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(data)
                if kind == "mid_response":
                    s.recv(1024)  # the answer started (3 x 512 x 512 float32 probabilities follow)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                s.close()
        ready_s = server.seconds_to_ready()
        deadline = time.monotonic() + 10
        while server.metric("wsdeploy_requests_in_flight") and time.monotonic() < deadline:
            time.sleep(0.05)
        after = [segment(server.port, exp.pngs[i % len(exp.pngs)]) for i in range(8)]
        wrong = sum(not (s == 200 and exp.correct(i % len(exp.pngs), b)) for i, (s, _, b) in enumerate(after))
        return {"disconnects_per_kind": n, "kinds": list(kinds), "ready_after_s": ready_s,
                "in_flight_after": server.metric("wsdeploy_requests_in_flight"), "requests_after": len(after),
                "wrong_or_lost_after": wrong, "server_alive": server.proc.poll() is None}
    finally:
        log = server.stop()
        print("  server log tail:", log[-300:].strip().replace("\n", " | ")[:300] or "(empty)")


def slow_body(model: str, exp: Expected, slow_clients: int = 4, body_timeout: float = 2.0, normal: int = 30) -> dict:
    server = Server(model, max_batch_size=4, batch_timeout=0.005, body_timeout=body_timeout)
    try:
        def timed(i: int) -> float:
            t0 = time.perf_counter()
            status, _, body = segment(server.port, exp.pngs[i % len(exp.pngs)])
            assert status == 200 and exp.correct(i % len(exp.pngs), body)
            return time.perf_counter() - t0

        alone = [timed(i) for i in range(normal)]
        results: list[tuple[int, float, bytes]] = []

        def trickle() -> None:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n")
            t0, reply = time.monotonic(), b""
            s.settimeout(0.5)
            while time.monotonic() - t0 < 10 * body_timeout and b"\r\n\r\n" not in reply:
                try:
                    s.sendall(b"\x00")
                except OSError:
                    pass
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
                except socket.timeout:
                    pass
            try:
                reply += s.recv(4096)
            except OSError:
                pass
            s.close()
            status = int(reply.split()[1]) if reply.startswith(b"HTTP/") else 0
            results.append((status, time.monotonic() - t0, reply.split(b"\r\n\r\n", 1)[-1]))

        threads = [threading.Thread(target=trickle) for _ in range(slow_clients)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        during = [timed(i) for i in range(normal)]
        for t in threads:
            t.join()
        return {
            "slow_clients": slow_clients, "bytes_per_second": 2, "body_timeout_s": body_timeout,
            "slow_statuses": _tally([str(s) for s, _, _ in results]),
            "slow_error_json": sum(is_error_json(s, b, "body_timeout") for s, _, b in results),
            "slow_seconds_to_408_max": round(max(t for _, t, _ in results), 2),
            "normal_requests": normal,
            "normal_p50_ms_alone": round(1000 * float(np.median(alone)), 1),
            "normal_p50_ms_during": round(1000 * float(np.median(during)), 1),
            "normal_max_ms_during": round(1000 * max(during), 1),
            "normal_wrong_or_lost": 0,  # timed() asserts every answer
            "ready_after_s": server.seconds_to_ready(),
        }
    finally:
        server.stop()


def burst(model: str, exp: Expected, max_queue: int = 8, factor: int = 10) -> dict:
    server = Server(model, max_batch_size=4, batch_timeout=0.01, max_queue=max_queue)
    try:
        rss_before = server.rss_mb()
        clients = factor * max_queue
        barrier = threading.Barrier(clients)

        def one(i: int) -> str:
            barrier.wait()
            try:
                status, headers, body = segment(server.port, exp.pngs[i % len(exp.pngs)], timeout=120)
            except OSError as exc:
                return f"lost:{type(exc).__name__}"
            if status == 200:
                return "200" if exp.correct(i % len(exp.pngs), body) else "wrong"
            if status == 503:
                ok = headers.get("retry-after") == "1" and is_error_json(status, body, "queue_full")
                return "503" if ok else "503-undocumented"
            return f"other:{status}"

        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            outcomes = list(pool.map(one, range(clients)))
        ready_s = server.seconds_to_ready()
        return {"max_queue": max_queue, "clients": clients, "outcomes": _tally(outcomes),
                "wrong_or_lost": sum(o.startswith(("lost", "wrong", "other", "503-")) for o in outcomes),
                "server_rss_mb_before": round(rss_before, 1), "server_peak_rss_mb": round(server.rss_mb("VmHWM"), 1),
                "ready_after_s": ready_s}
    finally:
        server.stop()


def backend_fault(model: str, exp: Expected, clients: int = 8, per_client: int = 6, fail_batch: int = 5) -> dict:
    server = Server(model, fail_batches=str(fail_batch), max_batch_size=4, batch_timeout=0.02, max_queue=64)
    try:
        def one(i: int) -> list[str]:
            out = []
            for k in range(per_client):
                j = (i + k) % len(exp.pngs)
                status, _, body = segment(server.port, exp.pngs[j])
                if status == 200:
                    out.append("200" if exp.correct(j, body) else "wrong")
                elif status == 500:
                    out.append("500" if is_error_json(status, body, "inference_failed") else "500-undocumented")
                    out.append(f"ready:{server.ready()}")
                else:
                    out.append(f"other:{status}")
            return out

        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            outcomes = [o for res in pool.map(one, range(clients)) for o in res]
        batches = server.metric("wsdeploy_batch_size_count")
        return {"clients": clients, "requests": clients * per_client, "failed_batch": fail_batch,
                "outcomes": _tally([o for o in outcomes if not o.startswith("ready")]),
                "ready_right_after_each_500": _tally([o for o in outcomes if o.startswith("ready")]),
                "batches_that_succeeded": batches, "ready_after_s": server.seconds_to_ready()}
    finally:
        server.stop()


def sigterm(model: str, exp: Expected, clients: int = 12, seconds_before: float = 3.0) -> dict:
    server = Server(model, max_batch_size=4, batch_timeout=0.05, max_queue=64)
    stop = threading.Event()

    def one(i: int) -> list[str]:
        out = []
        for k in range(400):  # bounded; the server goes away within seconds
            if stop.is_set() and k and out and out[-1] == "refused":
                break
            j = (i + k) % len(exp.pngs)
            try:
                status, _, body = segment(server.port, exp.pngs[j], timeout=60)
            except ConnectionRefusedError:
                out.append("refused")  # not accepted: the server had stopped listening
                time.sleep(0.05)
                continue
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, socket.timeout) as exc:
                out.append(f"lost:{type(exc).__name__}")
                continue
            if status == 200:
                out.append("200" if exp.correct(j, body) else "wrong")
            elif status == 503:
                out.append("503" if is_error_json(status, body, "draining") else "503-undocumented")
            else:
                out.append(f"other:{status}")
        return out

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(one, i) for i in range(clients)]
        time.sleep(seconds_before)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(60)
        exit_s = time.monotonic() - t0
        stop.set()
        outcomes = [o for f in futures for o in f.result()]
    log = server.stop()
    return {"clients": clients, "outcomes": _tally(outcomes),
            "lost_or_wrong": sum(o.startswith(("lost", "wrong", "other", "503-")) for o in outcomes),
            "exit_code": code, "seconds_to_exit": round(exit_s, 2), "traceback_in_log": "Traceback" in log}


def soak(model: str, exp: Expected, minutes: float, rate: float, clients: int = 2) -> dict:
    server = Server(model, max_batch_size=4, batch_timeout=0.005)
    try:
        t_start = time.monotonic()
        t_end = t_start + 60 * minutes
        lat: list[tuple[float, float]] = []
        bad = []
        rss: list[tuple[float, float]] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            period, k = clients / rate, 0
            nxt = time.monotonic()
            while time.monotonic() < t_end and k < int(rate * 60 * minutes) + 10:
                j = (i + k) % len(exp.pngs)
                t0 = time.monotonic()
                try:
                    status, _, body = segment(server.port, exp.pngs[j])
                    ok = status == 200 and exp.correct(j, body)
                except OSError as exc:
                    ok, status = False, type(exc).__name__
                with lock:
                    lat.append((t0 - t_start, time.monotonic() - t0))
                    if not ok:
                        bad.append(status)
                k += 1
                nxt += period
                time.sleep(max(0.0, nxt - time.monotonic()))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        while time.monotonic() < t_end:
            rss.append((round(time.monotonic() - t_start, 1), round(server.rss_mb(), 1)))
            time.sleep(min(10.0, max(0.1, t_end - time.monotonic())))
        for t in threads:
            t.join()
        rss.append((round(time.monotonic() - t_start, 1), round(server.rss_mb(), 1)))
        warm = [r for t, r in rss if t >= 60] or [r for _, r in rss]
        per_minute = []
        for m in range(int(np.ceil(minutes))):
            window = [s for t, s in lat if m * 60 <= t < (m + 1) * 60]
            if window:
                per_minute.append({"minute": m + 1, "requests": len(window),
                                   "p50_ms": round(1000 * float(np.percentile(window, 50)), 1),
                                   "p99_ms": round(1000 * float(np.percentile(window, 99)), 1)})
        return {"minutes": minutes, "clients": clients, "target_rate_per_s": rate, "requests": len(lat),
                "wrong_or_lost": len(bad), "bad": _tally([str(b) for b in bad]),
                "rss_mb_after_warmup_first": warm[0], "rss_mb_last": warm[-1],
                "rss_growth_pct": round(100 * (warm[-1] - warm[0]) / warm[0], 2), "rss_samples": rss,
                "p99_ms_first_minute": per_minute[0]["p99_ms"] if per_minute else None,
                "p99_ms_last_minute": per_minute[-1]["p99_ms"] if per_minute else None, "per_minute": per_minute}
    finally:
        server.stop()


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(1)
    from wsdeploy.atomic import atomic_write_text
    from wsdeploy.environment import library_versions, machine_info

    model = args.model or default_model(Path(tempfile.mkdtemp(prefix="serve-faults-")))
    rng = np.random.default_rng(0)
    images = [cv2.GaussianBlur(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8), (0, 0), 2)
              for _ in range(4)]
    exp = Expected(model, images)
    out_path = Path(args.out)
    previous = json.loads(out_path.read_text())["scenarios"] if out_path.is_file() else {}
    results = {k: v for k, v in previous.items() if k not in args.scenarios}
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    for name in args.scenarios:
        t0 = time.time()
        if name == "soak":
            r = soak(model, exp, args.soak_minutes, args.soak_rate)
        else:
            r = globals()[name](model, exp)
        r["seconds"] = round(time.time() - t0, 1)
        r["command"] = command
        results[name] = r
        print(name, json.dumps({k: v for k, v in r.items() if k not in ("rss_samples", "per_minute")}), flush=True)
    out = {
        "benchmark": "serve_faults",
        "command": command,
        "machine": machine_info(),
        "versions": library_versions(extra=("fastapi", "uvicorn", "starlette")),
        "threads": {"server_torch": 1, "client_torch": 1},
        "model": args.model or "random lraspp_resnet18 width 16, 3 classes (made by this script)",
        "image_size": args.size,
        "scenarios": results,
    }
    atomic_write_text(out_path, json.dumps(out, indent=1) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
