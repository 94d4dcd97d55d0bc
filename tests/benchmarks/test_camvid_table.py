"""benchmarks/camvid_table.py: the weight-list parsing, each row's tuned flags, and the committed results file's tuning
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


def test_row_flags_give_each_tuned_loss_its_chosen_weight_and_settings(table):
    chosen = {"crf": 1.0, "entropy": 0.3, "adm": 4.0}
    # the earlier rows' flags are unchanged, so their finished runs are reused
    assert table.row_flags("pce+crf+entropy", chosen) == ["--crf-weight", "1", "--entropy-weight", "0.3"]
    assert table.row_flags("pce", chosen) == []
    adm = table.row_flags("pce+adm", chosen)
    assert adm[:2] == ["--adm-crf-weight", "4"]
    common = table.COMMON  # ADM's proposal kernel is the dense-CRF loss's
    assert adm[adm.index("--adm-sigma-rgb") + 1] == common[common.index("--crf-sigma-rgb") + 1]
    assert adm[adm.index("--adm-sigma-xy") + 1] == common[common.index("--crf-sigma-xy") + 1]
    assert table.loss_flags("adm", 16) == ["--adm-crf-weight", "16", *adm[2:]]


def test_committed_table_uses_the_weights_its_tuning_split_chose(table):
    results = json.loads(RESULTS.read_text())
    tuning = results["tuning"]
    assert {"crf_weight", "entropy_weight"} <= set(tuning)
    for loss in [key.removesuffix("_weight") for key in tuning]:
        flag = table.TUNED_FLAG[loss]
        stage = tuning[f"{loss}_weight"]
        scores = stage["tune_miou"]
        assert set(scores) == set(stage["candidates"]) and len(scores) > 1
        assert stage["chosen"] == max(scores, key=scores.get)
        for weight, command in stage["commands"].items():  # tuned on the tuning split, never val
            args = shlex.split(command)
            assert args[args.index("--val-split") + 1] == "tune"
            assert args[args.index("--train-split") + 1] == "tune_train"
            assert args[args.index(flag) + 1] == weight
    for row in results["runs"]:
        args = shlex.split(row["command"].split("  (also")[0])
        assert args[args.index("--val-split") + 1] == "val"
        for loss in args[args.index("--losses") + 1].split(","):
            if loss in table.TUNED_FLAG:
                flag = table.TUNED_FLAG[loss]
                assert args[args.index(flag) + 1] == tuning[f"{loss}_weight"]["chosen"], row["name"]
        assert len(row["miou_per_seed"]) == 2  # the 2 training seeds, both kept
