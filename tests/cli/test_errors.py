"""Issue 16, items 11 and 13: every failure of a command is one line on stderr, never a
traceback (RuntimeError such as CUDA out of memory, PermissionError, a full disk too), and a bad
flag after a command prints that command's usage."""
from __future__ import annotations

import errno
import types

import pytest

from wsdeploy.cli import main as cli_main
from wsdeploy.cli.errors import describe


@pytest.fixture
def failing_command(monkeypatch):
    """Make `wsdeploy make-dataset` raise the given exception from its run()."""

    def install(exc: BaseException) -> None:
        def run(args):
            raise exc

        module = types.SimpleNamespace(run=run, add_arguments=lambda p: p.add_argument("out"))
        real = cli_main.importlib.import_module
        monkeypatch.setattr(cli_main.importlib, "import_module",
                            lambda name: module if name == "wsdeploy.cli.make_dataset" else real(name))

    return install


@pytest.mark.parametrize("exc, code, expected", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8 GiB"), 1,
     "CUDA out of memory; try a smaller --batch-size or --crop-size, or --amp bf16"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x.png"), 1, "permission denied: '/root/x.png'"),
    (OSError(errno.ENOSPC, "No space left on device", "out/model.pt"), 1, "no space left on the device: 'out/model.pt'"),
    (MemoryError(), 1, "out of memory"),
    (ValueError("bad\nvalue   here"), 2, "bad value here"),
    (KeyError("oops"), 1, "internal error KeyError"),
])
def test_failures_are_one_line(failing_command, capsys, exc, code, expected):
    failing_command(exc)
    assert cli_main.main(["make-dataset", "out"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("wsdeploy make-dataset: error: ") and expected in err


def test_long_messages_are_cut():
    code, message = describe(RuntimeError("x" * 5000))
    assert code == 1 and len(message) <= 400


def test_bad_flag_after_a_command_prints_its_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["segment", "a.jpg", "--out", "o", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: wsdeploy segment" in err and "unrecognized arguments: --bogus" in err


def test_bench_int8_without_calibration_says_how(tmp_path, capsys):
    from wsdeploy.runtime import DEFAULT_MODEL_PATH

    assert cli_main.main(["bench", str(DEFAULT_MODEL_PATH), "--backend", "torch,onnxruntime-int8"]) == 2
    assert "--calibration wsdeploy/assets/demo_data/images" in capsys.readouterr().err  # issue 16, item 4


def test_a_missing_extra_while_building_the_options_is_one_line(monkeypatch, capsys):
    real = cli_main.importlib.import_module

    def without_yaml(name):
        if name == "wsdeploy.cli.make_dataset":
            raise ImportError('this needs pyyaml: pip install "wsdeploy[train]"')
        return real(name)

    monkeypatch.setattr(cli_main.importlib, "import_module", without_yaml)
    assert cli_main.main(["make-dataset", "out"]) == 2
    err = capsys.readouterr().err
    assert err == 'wsdeploy make-dataset: error: this needs pyyaml: pip install "wsdeploy[train]"\n'


def test_annotate_help_shows_the_defaults(capsys):
    """Issue 16, item 15: --steps / --size say their defaults (AnnotateConfig's)."""
    from wsdeploy.training.annotate.config import AnnotateConfig

    with pytest.raises(SystemExit):
        cli_main.main(["annotate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    default = AnnotateConfig()
    assert f"per image (default: {default.steps})" in out and f"in pixels (default: {default.size})" in out
