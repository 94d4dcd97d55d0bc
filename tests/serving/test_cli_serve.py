"""`wsdeploy serve` flags -> ServeConfig (the server itself runs in test_server.py)."""
from __future__ import annotations

import argparse

import pytest

from wsdeploy.cli import serve as serve_cli


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_bind_loopback_and_batch(checkpoint):
    args = _args(str(checkpoint))
    config = serve_cli.config_from_args(args)
    assert args.host == "127.0.0.1" and args.port == 8000
    assert (config.max_batch_size, config.batch_timeout, config.api_key) == (16, 0.005, None)


def test_flags_reach_the_config(checkpoint, monkeypatch):
    monkeypatch.setenv("MY_KEY", "abc")
    config = serve_cli.config_from_args(_args(
        str(checkpoint), "--max-batch", "1", "--max-delay-ms", "0", "--api-key-env", "MY_KEY", "--crf",
        "--max-body-mb", "1", "--max-pixels", "1000", "--workers", "2"))
    assert (config.max_batch_size, config.batch_timeout, config.api_key, config.crf) == (1, 0.0, "abc", True)
    assert config.max_body_bytes == 2**20 and config.max_pixels == 1000 and config.torch_threads >= 1
    assert "abc" not in repr(config)  # the key never shows in logs


@pytest.mark.parametrize(
    "argv, match",
    [
        (("missing.pt",), "model file not found"),
        (("--api-key-env", "WSDEPLOY_TEST_UNSET_VAR"), "not set"),
        (("--max-batch", "0"), "max_batch_size"),
        (("--max-delay-ms", "-1"), "max-delay-ms"),
        (("--max-batch", "32", "--max-queue", "8"), "max_queue"),
    ],
)
def test_bad_flags_are_clear_errors(argv, match, monkeypatch):
    monkeypatch.delenv("WSDEPLOY_TEST_UNSET_VAR", raising=False)
    with pytest.raises(ValueError, match=match):
        serve_cli.config_from_args(_args(*argv))
