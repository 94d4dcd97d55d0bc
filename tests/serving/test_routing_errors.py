"""Issue 16, items 11 and 12: 404/405 in the documented {"error": {...}} form, /docs and
/openapi.json, the Python client raising ServingError on a dead port, and `serve` refusing a
busy port at once, before loading the model."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest
from wsdeploy.serving import Client, ServingError

from tests.serving.conftest import running_app, small_config
from wsdeploy.cli.main import main
from wsdeploy.cli.serve import check_port_free


def test_404_405_docs_and_openapi(checkpoint):
    async def go():
        async with running_app(small_config(checkpoint)) as (_, c):
            missing = await c.get("/v2/nothing")
            wrong = await c.get("/v1/segment")
            docs = await c.get("/docs")
            schema = await c.get("/openapi.json")
            return missing, wrong, docs, schema

    missing, wrong, docs, schema = asyncio.run(go())
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no endpoint /v2/nothing; see /docs"}}
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers.get("allow", "")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    body = schema.json()["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert {"image/*", "multipart/form-data"} <= set(body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_on_a_dead_port_raises_serving_error():
    client = Client(f"http://127.0.0.1:{_free_port()}", timeout=5)
    with pytest.raises(ServingError, match="cannot reach") as info:
        client.info()
    assert info.value.status == 0 and info.value.code == "unreachable"
    assert client.ready() is False


def test_serve_refuses_a_busy_port_before_loading(checkpoint, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port_free("127.0.0.1", port)
        start = time.perf_counter()
        assert main(["serve", str(checkpoint), "--port", str(port)]) == 2
        assert time.perf_counter() - start < 5  # no model load, no warm-up
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose a free one with --port" in err
    check_port_free("127.0.0.1", port)  # free again
