"""`wsdeploy serve [MODEL]`: the HTTP segmentation service with dynamic batching.

    wsdeploy serve model.pt --port 8000 --max-batch 16 --max-delay-ms 5
    WSDEPLOY_API_KEY=secret wsdeploy serve model.onnx --api-key-env WSDEPLOY_API_KEY

Binds to 127.0.0.1 unless --host says otherwise. Stops gracefully on Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_arguments", "check_port_free", "config_from_args", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None,
                        help="model file wsdeploy.load reads (.pt checkpoint or an export); default: the bundled model")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--max-batch", type=int, default=16, help="most images per model call; 1 disables batching (default 16)")
    parser.add_argument("--max-delay-ms", type=float, default=5.0,
                        help="ms to wait for more requests after the first of a batch (default 5)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="most requests admitted at once; beyond it 503 + Retry-After (default 64)")
    parser.add_argument("--max-body-mb", type=float, default=20.0, help="largest request body in MiB; 413 beyond (default 20)")
    parser.add_argument("--max-pixels", type=int, default=4096 * 4096,
                        help="largest image in pixels, checked before decoding; 413 beyond (default 4096*4096)")
    parser.add_argument("--body-timeout", type=float, default=30.0,
                        help="seconds a client may take to upload its image; 408 beyond (default 30)")
    parser.add_argument("--workers", type=int, default=1, help="processes, each with its own model copy (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: torch's choice; with --workers N, cores / N)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu' or 'cuda[:N]'")
    parser.add_argument("--backend", default="auto",
                        help="inference backend: 'auto' (by the model file's suffix) or a wsdeploy.load backend name")
    parser.add_argument("--crf", action="store_true", help="refine every answer with the dense CRF")
    parser.add_argument("--api-key-env", default=None, metavar="NAME",
                        help="require 'Authorization: Bearer <key>' on /v1/*, the key read from this environment variable")
    parser.add_argument("--graceful-timeout", type=float, default=30.0,
                        help="seconds to wait for open requests on shutdown (default 30)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def config_from_args(args: argparse.Namespace) -> "object":
    """The `ServeConfig` the flags describe (raises ValueError on bad values)."""
    from wsdeploy.serving.config import ServeConfig

    if args.model is not None and not Path(args.model).is_file():
        raise ValueError(f"model file not found: {args.model!r}")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env {args.api_key_env}: that environment variable is not set or empty")
    threads = args.threads
    if threads is None and args.workers > 1:
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    if args.max_delay_ms < 0:
        raise ValueError(f"--max-delay-ms must be >= 0, got {args.max_delay_ms}")
    return ServeConfig(
        model=args.model,
        device=args.device,
        backend=args.backend,
        crf=args.crf,
        max_batch_size=args.max_batch,
        batch_timeout=args.max_delay_ms / 1000.0,
        max_queue=args.max_queue,
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_pixels=args.max_pixels,
        body_timeout=args.body_timeout,
        api_key=api_key,
        torch_threads=threads,
    )


def check_port_free(host: str, port: int) -> None:
    """Raise a one-line ValueError when `host:port` cannot be bound (another server holds it).

    Binds a socket the way uvicorn does (SO_REUSEADDR) and closes it again; port 0 always passes.
    """
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"--host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server there? "
                             f"choose a free one with --port)") from None


def run(args: argparse.Namespace) -> int:
    from wsdeploy.serving.server import serve

    config = config_from_args(args)
    check_port_free(args.host, args.port)  # before loading and warming the model
    serve(
        config, host=args.host, port=args.port, workers=args.workers,
        graceful_timeout=args.graceful_timeout, log_level=args.log_level,
    )
    return 0
