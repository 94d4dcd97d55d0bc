"""benchmarks/scribble_table.py's arithmetic: seed rows, the issue-20 "helps" rule, rows with
missing seeds, and the README table drawn from them (hand-made runs, nothing trained)."""
from __future__ import annotations

from pathlib import Path

import pytest

from wsdeploy.cli.main import build_parser

from tests.benchmarks.test_records import _load


def _run(name: str, miou: float) -> dict:
    return {"name": name, "miou": miou, "per_class_iou": {}, "command": f"wsdeploy train {name}"}


@pytest.fixture(scope="module")
def table():
    return _load("scribble_table")


def test_seed_row_keeps_every_seed_with_mean_and_sample_std(table):
    row = table.seed_row("pce", [_run("pce", 0.40), _run("pce", 0.44), _run("pce", 0.42)], [0, 1, 2])
    assert row["miou"] == pytest.approx(0.42)
    assert row["miou_std"] == pytest.approx(0.02)  # sample std of 0.40, 0.44, 0.42
    assert row["miou_range"] == pytest.approx(0.04)
    assert row["miou_per_seed"] == {"0": 0.40, "1": 0.44, "2": 0.42}
    assert row["command"].endswith("(also --seed 1, 2)")


def test_a_gain_helps_only_above_twice_the_larger_spread(table):
    pce = table.seed_row("pce", [_run("pce", v) for v in (0.40, 0.42)], [0, 1])  # std 0.0141
    crf = table.seed_row("pce+crf", [_run("pce+crf", v) for v in (0.45, 0.46)], [0, 1])  # std 0.0071
    ent = table.seed_row("pce+entropy", [_run("pce+entropy", v) for v in (0.42, 0.43)], [0, 1])
    one = table.seed_row("pce+potts", [_run("pce+potts", 0.5)], [0])
    g = table.gains([pce, crf, ent, one])
    assert g["pce+crf"]["gain"] == pytest.approx(0.045) and g["pce+crf"]["helps"] is True
    assert g["pce+crf"]["threshold"] == pytest.approx(2 * 0.0141421, rel=1e-4)
    assert g["pce+entropy"]["helps"] is False  # +0.015 < 0.028
    assert g["pce+potts"]["helps"] is None  # one seed: no spread to judge by


def test_markdown_names_the_seeds_a_row_lacks(table):
    pce = table.seed_row("pce", [_run("pce", v) for v in (0.40, 0.42)], [0, 1])
    ent = dict(table.seed_row("pce+entropy", [_run("pce+entropy", 0.41)], [0]), seeds_missing=[1])
    full = table.seed_row("full", [_run("full", v) for v in (0.50, 0.52)], [0, 1])
    text = table.markdown({"runs": [full, pce, ent], "gains": table.gains([full, pce, ent])})
    lines = text.splitlines()
    assert len(lines) == 5 and lines[2].startswith("| full | **51.0** +- 1.4 | 50.0, 52.0 | 100.0% |")
    assert "41.0 (seed 1 not run)" in lines[4] and "no spread" in lines[4]


def test_only_the_adm_row_gets_the_proposal_flags_and_they_parse(table):
    adm, adm_out = table.run_command("pce+adm", 2, "data/x", Path("runs/t"), ["--steps", "10"])
    assert adm_out == Path("runs/t/pce_adm_seed2")
    assert adm[adm.index("--losses") + 1] == "pce,adm" and adm[-2:] == ["--seed", "2"]
    assert adm[adm.index("--adm-crf-weight") + 1] == "16"
    crf, crf_out = table.run_command("pce+crf", 0, "data/x", Path("runs/t"), ["--steps", "10"])
    assert crf_out == Path("runs/t/pce_crf") and not any(c.startswith("--adm") for c in crf)
    parsed = build_parser("train").parse_args(adm[1:])
    assert (parsed.adm_crf_weight, parsed.adm_sigma_rgb, parsed.adm_sigma_xy) == (16.0, 30.0, 25.0)


def test_markdown_shows_the_slowest_seeds_minutes_only_when_runs_recorded_them(table):
    timed = [dict(_run("pce", v), wall_s=w, cpu_s=c) for v, w, c in ((0.40, 600, 540), (0.42, 720, 660))]
    pce = table.seed_row("pce", timed, [0, 1])
    assert (pce["wall_s_max"], pce["cpu_s_max"]) == (720, 660)
    full = table.seed_row("full", [_run("full", 0.5), dict(_run("full", 0.5), wall_s=1, cpu_s=1)], [0, 1])
    assert full["cpu_s_max"] is None  # one seed lacks its cost: no maximum to claim
    lines = table.markdown({"runs": [full, pce], "gains": {}}).splitlines()
    assert lines[0].endswith("| minutes per run, slowest seed (wall / CPU) |")
    assert lines[3].endswith("| 12.0 / 11.0 |") and lines[2].endswith("|  |")
    untimed = table.markdown({"runs": [table.seed_row("pce", [_run("pce", 0.4)], [0])], "gains": {}})
    assert "minutes" not in untimed


def test_train_timed_reports_the_childs_own_cpu_seconds_and_raises_on_failure(table):
    import os
    import subprocess
    import sys

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    cost = table.train_timed([sys.executable, "-c", spin], env=dict(os.environ))
    assert cost["cpu_s"] >= 0.3 and cost["wall_s"] >= cost["cpu_s"] - 0.05
    with pytest.raises(subprocess.CalledProcessError):
        table.train_timed([sys.executable, "-c", "raise SystemExit(3)"], env=dict(os.environ))
