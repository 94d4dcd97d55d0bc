"""`wsdeploy export`: the format dispatch, outputs, and errors (via the command module, so the
test does not depend on the entry point's command list)."""
from __future__ import annotations

import argparse
import json
import shutil

import pytest

import wsdeploy
from wsdeploy.cli import export as export_cli

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wsdeploy export")
    export_cli.add_arguments(parser)
    return export_cli.run(parser.parse_args(argv))


def test_formats_are_a_plain_dict():
    assert set(export_cli.FORMATS) >= {"onnx", "pt2", "tensorrt"}
    assert all(callable(f) for f in export_cli.FORMATS.values())


def test_export_onnx_prints_the_parity_report(checkpoint, onnx_file, tmp_path, capsys, monkeypatch):
    import wsdeploy.export.onnx_export as onnx_export

    # reuse the session export instead of re-running the slow torch.onnx.export step
    monkeypatch.setattr(onnx_export, "_torch_export", lambda model, example, path, **kw: shutil.copy(onnx_file, path))
    out = tmp_path / "m.onnx"
    assert _run([str(checkpoint), "--format", "onnx", "--out", str(out), "--no-simplify"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["precision"] == "fp32" and summary["parity"]["label_agreement"] >= 0.999
    assert wsdeploy.load(out, device="cpu").classes == ["background", "red", "green"]


def test_export_pt2(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.pt2"
    assert _run([str(checkpoint), "--format", "pt2", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "exported_program"
    assert wsdeploy.load(out, device="cpu").backend.kind == "exported_program"


def test_export_errors(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="--int8 needs --calibration"):
        _run([str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--int8"])
    with pytest.raises(ValueError, match="pt2 exports fp32"):
        _run([str(checkpoint), "--format", "pt2", "--out", str(tmp_path / "m.pt2"), "--fp16"])
    with pytest.raises(SystemExit):  # argparse: --fp16 and --int8 are exclusive
        _run([str(checkpoint), "--format", "onnx", "--out", "x.onnx", "--fp16", "--int8"])


def test_check_only_compares_two_model_files(checkpoint, onnx_file, tmp_path, capsys):
    from tests.export.conftest import make_checkpoint
    from wsdeploy.export import ParityError

    assert _run(["--check-only", str(onnx_file), str(checkpoint)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["label_agreement"] >= 0.999 and report["images"] >= 1
    other = make_checkpoint(tmp_path / "other.pt", width=8)  # same classes, other weights
    with pytest.raises(ParityError, match="parity check failed: label agreement"):
        _run(["--check-only", str(onnx_file), str(other)])
    assert not list(tmp_path.glob("*.onnx"))  # nothing written


def test_check_only_argument_errors(checkpoint, onnx_file):
    with pytest.raises(ValueError, match="needs two files"):
        _run(["--check-only", str(onnx_file)])
    with pytest.raises(ValueError, match="writes nothing"):
        _run(["--check-only", str(onnx_file), str(checkpoint), "--format", "onnx"])
    with pytest.raises(ValueError, match="needs --format and --out"):
        _run([str(checkpoint)])
    with pytest.raises(ValueError, match="unexpected second file"):
        _run([str(checkpoint), str(onnx_file), "--format", "onnx", "--out", "x.onnx"])
    with pytest.raises(ValueError, match="--fp32 is for --format tensorrt"):
        _run([str(checkpoint), "--format", "onnx", "--out", "x.onnx", "--fp32"])


def test_export_tensorrt_without_tensorrt_names_the_extra(checkpoint, tmp_path):
    from wsdeploy.backends.tensorrt_backend import import_tensorrt

    try:
        import_tensorrt()
    except ImportError:
        with pytest.raises(ImportError, match=r'wsdeploy\[gpu\]'):  # before any ONNX export
            _run([str(checkpoint), "--format", "tensorrt", "--out", str(tmp_path / "m.engine")])
        assert not list(tmp_path.iterdir())
    else:  # pragma: no cover - machines with TensorRT
        pytest.skip("TensorRT is installed")
