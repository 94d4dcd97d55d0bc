"""benchmarks/camvid_table.py: the weight-list parsing, and the committed results file's tuning
stage against its own rows (the chosen weight is the tuning split's best, and the regularized
rows trained with it; nothing trained here)."""
from __future__ import annotations

import json
import shlex

import pytest

from tests.benchmarks.test_records import ROOT, _load

RESULTS = ROOT / "benchmarks" / "results" / "camvid_scribble_table.json"


@pytest.fixture(scope="module")
def table():
    return _load("camvid_table")


def test_parse_weights_accepts_a_comma_list_and_rejects_the_rest(table):
    assert table.parse_weights("0.5,1, 2") == [0.5, 1.0, 2.0]
    for bad in ("", "1,x", "0,1", "-1"):
        with pytest.raises(SystemExit, match="weights must be"):
            table.parse_weights(bad)


def test_committed_table_uses_the_weights_its_tuning_split_chose():
    results = json.loads(RESULTS.read_text())
    tuning = results["tuning"]
    for loss in ("crf", "entropy"):
        stage = tuning[f"{loss}_weight"]
        scores = stage["tune_miou"]
        assert set(scores) == set(stage["candidates"]) and len(scores) > 1
        assert stage["chosen"] == max(scores, key=scores.get)
        for weight, command in stage["commands"].items():  # tuned on the tuning split, never val
            args = shlex.split(command)
            assert args[args.index("--val-split") + 1] == "tune"
            assert args[args.index("--train-split") + 1] == "tune_train"
            assert args[args.index(f"--{loss}-weight") + 1] == weight
    for row in results["runs"]:
        args = shlex.split(row["command"].split("  (also")[0])
        assert args[args.index("--val-split") + 1] == "val"
        for loss in ("crf", "entropy"):
            if loss in args[args.index("--losses") + 1].split(","):
                assert args[args.index(f"--{loss}-weight") + 1] == tuning[f"{loss}_weight"]["chosen"], row["name"]
        assert len(row["miou_per_seed"]) == 2  # the 2 training seeds, both kept
