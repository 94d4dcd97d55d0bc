"""wsdeploy.serving: an HTTP segmentation service with dynamic batching, and its Python client.

    wsdeploy serve model.pt --port 8000                 # the command line
    from wsdeploy.serving import ServeConfig, create_app, serve
    serve(ServeConfig(model="model.pt", max_batch_size=16, batch_timeout=0.005))

    from wsdeploy.serving import Client                # needs no serve extra
    seg = Client("http://127.0.0.1:8000").segment("cat.jpg")

The service needs the serve extra (`pip install "wsdeploy[serve]"`: FastAPI, uvicorn,
prometheus-client, python-multipart); names load on first use, so `import wsdeploy.serving` and
the client work without it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Client",
    "DynamicBatcher",
    "InvalidRequestError",
    "SegmentationAPI",
    "ServeConfig",
    "ServingError",
    "create_app",
    "serve",
]

_WHERE = {
    "Client": "client",
    "InvalidRequestError": "client",
    "ServingError": "client",
    "DynamicBatcher": "batching",
    "SegmentationAPI": "api",
    "ServeConfig": "config",
    "create_app": "app",
    "serve": "server",
}

if TYPE_CHECKING:  # pragma: no cover
    from wsdeploy.serving.api import SegmentationAPI
    from wsdeploy.serving.app import create_app
    from wsdeploy.serving.batching import DynamicBatcher
    from wsdeploy.serving.client import Client, InvalidRequestError, ServingError
    from wsdeploy.serving.config import ServeConfig
    from wsdeploy.serving.server import serve


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"wsdeploy.serving.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'wsdeploy.serving' has no attribute {name!r}")
