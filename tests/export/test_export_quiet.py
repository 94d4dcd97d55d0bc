"""Issue 16, item 8: `wsdeploy export` prints our lines only: no "torchvision is not installed"
warnings from torch's exporter, no onnxscript INFO lines."""
from __future__ import annotations

import pytest

from wsdeploy.cli.main import main


@pytest.mark.slow  # one real torch.onnx.export (~8 s)
def test_export_prints_no_foreign_log_lines(checkpoint, tmp_path, capfd):
    code = main(["export", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                 "--no-check", "--no-simplify"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "torchvision" not in err and "onnxscript" not in err.lower()
    foreign = [line for line in err.splitlines() if line.strip() and "wsdeploy" not in line]
    assert not foreign, foreign
    assert '"path"' in out


def test_missing_export_extra_names_it(checkpoint, tmp_path, monkeypatch, capsys):
    """Issue 16, item 5: without onnxscript the export says which extra to install."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert 'pip install "wsdeploy[export]"' in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
