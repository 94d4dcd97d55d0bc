"""Issue 16, items 7 and 11: `wsdeploy segment FOLDER` goes on past a corrupt file and says so
at the end (exit 1), `--strict` stops at it; `--max-pixels` exists, as the too-large hint says."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.cli.main import main
from wsdeploy.data.image_io import write_image
from wsdeploy.models import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    card = ModelCard(arch="lraspp_resnet18", arch_kwargs={"width": 8}, classes=["a", "b"])
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint(path, build_model(card.arch, 2, width=8), card)
    return path


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "c"):
        write_image(tmp_path / "in" / f"{name}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    (tmp_path / "in" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return tmp_path / "in"


def test_a_corrupt_file_is_skipped_and_reported(checkpoint, folder, tmp_path, capsys):
    code = main(["segment", str(folder), "--model", str(checkpoint), "--out", str(tmp_path / "out"), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.png")) == ["a_mask.png", "c_mask.png"]
    assert f"skipped {folder / 'b.jpg'}" in captured.err
    assert "wrote 2 mask(s) and overlay(s)" in captured.out and "skipped 1 image(s) that could not be read" in captured.out


def test_strict_stops_at_the_corrupt_file(checkpoint, folder, tmp_path, capsys):
    code = main(["segment", str(folder), "--model", str(checkpoint), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--strict"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress bar's line
    assert code == 2 and "Traceback" not in err and last.startswith("wsdeploy segment: error: ") and "b.jpg" in last


def test_max_pixels_flag(checkpoint, folder, tmp_path, capsys):
    code = main(["segment", str(folder / "a.png"), "--model", str(checkpoint), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--max-pixels", "100"])
    err = capsys.readouterr().err
    assert code == 2 and "image too large" in err and "--max-pixels" in err
