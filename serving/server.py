"""Running the app under uvicorn: `serve(config, host=..., port=...)`.

Graceful shutdown (SIGINT / SIGTERM): the app is marked draining (`/readyz` -> 503, so a load
balancer stops sending), uvicorn stops accepting connections and waits up to
`graceful_timeout` seconds for open requests to be answered, then the lifespan ends and the
batcher finishes anything still queued. A second signal forces the exit.

`workers > 1` starts that many processes (uvicorn's process manager), each loading its own model
with `torch_threads` threads; the settings reach them as JSON in the `WSDEPLOY_SERVE_CONFIG`
environment variable, read once by `app_from_environment`.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from wsdeploy.serving.config import ServeConfig

__all__ = ["CONFIG_ENV", "app_from_environment", "serve"]

logger = logging.getLogger(__name__)

CONFIG_ENV = "WSDEPLOY_SERVE_CONFIG"


def _import_uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError('wsdeploy serve needs uvicorn: pip install "wsdeploy[serve]"') from exc
    return uvicorn


def app_from_environment() -> Any:
    """The app factory uvicorn's worker processes call (settings from `WSDEPLOY_SERVE_CONFIG`)."""
    from wsdeploy.serving.app import create_app

    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ValueError(f"{CONFIG_ENV} is not set; start workers through wsdeploy.serving.serve()")
    return create_app(ServeConfig.from_json(text))


def serve(
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    graceful_timeout: float = 30.0,
    log_level: str = "info",
    api: Any = None,
) -> None:
    """Serve until SIGINT / SIGTERM (blocking).

    Args:
        config: the service settings.
        host: the interface to bind; 127.0.0.1 (loopback only) unless you mean to expose it.
        port: TCP port (0 picks a free one).
        workers: processes, each with its own model copy.
        graceful_timeout: seconds to wait for open requests on shutdown.
        log_level: uvicorn's log level.
        api: the model steps (a `SegmentationAPI`; default built from `config`), e.g. one that
            injects faults in a test; single process only.
    """
    uvicorn = _import_uvicorn()
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in [0, 65535], got {port!r}")
    common = dict(
        host=host, port=port, log_level=log_level, timeout_graceful_shutdown=graceful_timeout,
        access_log=False, lifespan="on",
    )
    if workers > 1:
        if api is not None:
            raise ValueError("api= needs workers=1 (worker processes build their own from the config)")
        os.environ[CONFIG_ENV] = config.to_json()
        uvicorn.run("wsdeploy.serving.server:app_from_environment", factory=True, workers=workers, **common)
        return
    from wsdeploy.serving.app import create_app

    app = create_app(config, api=api)
    server = _draining_server_class(uvicorn)(uvicorn.Config(app, **common))
    server.on_exit = lambda: setattr(app.state.service, "draining", True)
    server.run()


def _draining_server_class(uvicorn: Any) -> type:
    class DrainingServer(uvicorn.Server):  # type: ignore[misc, name-defined]
        """uvicorn.Server that marks the app draining as soon as the exit signal arrives."""

        on_exit: Any = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.on_exit is not None:
                self.on_exit()
            super().handle_exit(sig, frame)

    return DrainingServer

