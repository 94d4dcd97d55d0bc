"""Issue 16, item 2: a relative `--seeds` / `scribble_dir` is found from the working directory
first (as every other command-line path), then inside the dataset root."""
from pathlib import Path

import numpy as np
import pytest

from wsdeploy.data.datasets import SegmentationDataset
from wsdeploy.data.index import resolve_label_dir

from tests.wsdeploy.data.conftest import write_gray_png


def _seeds(folder: Path, ids=("a", "b", "c")) -> None:
    seeds = np.full((6, 8), 255, np.uint8)
    seeds[2, 3] = 1
    for i in ids:
        write_gray_png(folder / f"{i}.png", seeds)


def test_relative_seeds_found_from_the_working_directory(folder_root: Path, tmp_path: Path, monkeypatch):
    work = tmp_path / "work"
    _seeds(work / "runs" / "seeds")  # where `wsdeploy cam --seeds-out runs/seeds` wrote them
    monkeypatch.chdir(work)
    ds = SegmentationDataset(folder_root, split=None, labels="scribbles", scribble_dir="runs/seeds")
    assert ds.index.scribble_dir == Path("runs/seeds")
    assert int((ds[0]["label"] != 255).sum()) == 1


def test_relative_seeds_fall_back_to_the_dataset_root(folder_root: Path, tmp_path: Path, monkeypatch):
    _seeds(folder_root / "seeds")
    monkeypatch.chdir(tmp_path)
    assert resolve_label_dir(folder_root, "seeds", "x") == folder_root / "seeds"


def test_missing_label_dir_names_both_places(folder_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"partial-label folder not found: 'nope' or '.*nope'"):
        SegmentationDataset(folder_root, scribble_dir="nope")
