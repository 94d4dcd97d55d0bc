"""Issue 16, item 3: `cam --cams DIR --seeds-out` after a `--sweep` uses the sweep's pick, as
`--help` says, instead of refusing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wsdeploy.checkpoint import ModelCard, save_checkpoint
from wsdeploy.cli.main import main
from wsdeploy.data.synthetic import CLASSES, generate_dataset
from wsdeploy.models import build_model


@pytest.fixture
def cams(tmp_path) -> tuple[Path, Path]:
    data = generate_dataset(tmp_path / "ds", num_images=4, size=32, seed=1, val_fraction=0.25, workers=0)
    torch.manual_seed(0)
    card = ModelCard(arch="classifier_resnet18", arch_kwargs={"width": 8}, classes=list(CLASSES), supervision="tags")
    save_checkpoint(tmp_path / "cls.pt", build_model(card.arch, len(CLASSES), width=8), card)
    assert main(["cam", "--model", str(tmp_path / "cls.pt"), "--data", str(data), "--out", str(tmp_path / "cams"),
                 "--device", "cpu", "--scales", "1", "--no-flip"]) == 0
    return data, tmp_path / "cams"


def test_seeds_use_the_previous_sweep(cams, tmp_path, capsys):
    data, cam_dir = cams
    seeds = tmp_path / "seeds"
    # before any sweep: a one-line refusal naming the three ways out
    assert main(["cam", "--cams", str(cam_dir), "--data", str(data), "--seeds-out", str(seeds)]) == 2
    assert "--fg-threshold T, --sweep to pick it, or --cams CAM_DIR of an earlier --sweep" in capsys.readouterr().err
    assert main(["cam", "--cams", str(cam_dir), "--data", str(data), "--sweep", "--fg-thresholds", "0.3,0.6"]) == 0
    best = json.loads((cam_dir / "sweep_train.json").read_text())["best"]
    capsys.readouterr()
    assert main(["cam", "--cams", str(cam_dir), "--data", str(data), "--seeds-out", str(seeds)]) == 0
    assert f"thresholds from {cam_dir / 'sweep_train.json'}: fg {best['fg_threshold']}" in capsys.readouterr().out
    assert json.loads((seeds / "seeds.json").read_text())["fg_threshold"] == best["fg_threshold"]
