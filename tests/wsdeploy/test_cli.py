"""The `wsdeploy` command: help everywhere, segment, and errors printed without tracebacks."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.cli.main import COMMANDS, main
from wsdeploy.data.image_io import read_label_png, write_image
from wsdeploy.models import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    card = ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 16}, classes=["a", "b"])
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint(path, build_model(card.arch, 2, width=16), card)
    return path


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_for_every_command(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: wsdeploy" in out
    if command is not None:
        assert "--" in out  # documents its options


def test_entry_point_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "wsdeploy", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "demo" in result.stdout


def test_segment_writes_masks_and_overlays(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    for name, size in [("a", (20, 30)), ("b", (33, 17))]:
        write_image(folder / f"{name}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    code = main(["segment", str(folder), "--model", str(checkpoint), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 0
    mask = read_label_png(tmp_path / "out" / "b_mask.png")
    assert mask.shape == (33, 17) and mask.max() <= 1
    overlay = cv2.imread(str(tmp_path / "out" / "a_overlay.png"))
    assert overlay.shape[0] >= 20 and overlay.shape[1] > 30 and overlay.shape[2] == 3  # the overlay + its legend
    assert "wrote 2 mask(s)" in capsys.readouterr().out


def test_errors_are_one_line_messages(checkpoint, tmp_path, capsys):
    code = main(["segment", str(tmp_path / "missing.jpg"), "--model", str(checkpoint), "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: no such image file or folder" in err and "Traceback" not in err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["segment", str(bad), "--model", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert "not a supported image" in capsys.readouterr().err
    assert main(["segment", str(bad), "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
