"""benchmarks/: every results file says how it was made, and the scribble table's seed rule."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str):
    """A benchmark script as a module (benchmarks/ is not a package; its scripts import each other)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_results_file_records_machine_versions_and_command(path):
    record = json.loads(path.read_text())
    missing = {"machine", "versions"} - set(record)
    assert not missing, f"{path.name} lacks {sorted(missing)}"
    # one "command", or "commands": every run merged into a file that accumulates (annotate's)
    commands = [record["command"]] if "command" in record else record.get("commands")
    assert isinstance(commands, list) and commands, f"{path.name} records neither 'command' nor 'commands'"
    for command in commands:
        assert isinstance(command, str) and command.strip()
        script = next((w for w in command.split() if w.endswith(".py")), None)
        if script is not None:  # "python benchmarks/x.py ..." or "python scripts/x.py ...": committed
            relative = script[script.find("benchmarks/"):] if "benchmarks/" in script else script[script.find("scripts/"):]
            assert (ROOT / relative).is_file(), f"{path.name} was written by {script}, which is not in the repository"


def _row(name: str, values: list[float]) -> dict:
    return {"name": name, "miou": values[0], "command": f"wsdeploy train {name}"}


def test_seed_rows_keep_each_value_mean_and_spread_and_the_gain_rule():
    table = _load("scribble_table")
    seeds = [0, 1, 2]
    pce = table.seed_row("pce", [_row("pce", [v]) for v in (0.40, 0.42, 0.44)], seeds)
    assert pce["miou"] == pytest.approx(0.42) and pce["miou_std"] == pytest.approx(0.02)
    assert pce["miou_per_seed"] == {"0": 0.40, "1": 0.42, "2": 0.44} and pce["miou_range"] == pytest.approx(0.04)
    assert set(pce["runs_per_seed"]) == {"0", "1", "2"} and "also --seed 1, 2" in pce["command"]
    big = table.seed_row("pce+crf", [_row("x", [v]) for v in (0.50, 0.51, 0.52)], seeds)  # +0.09 > 2 * 0.02
    small = table.seed_row("pce+potts", [_row("x", [v]) for v in (0.43, 0.45, 0.47)], seeds)  # +0.03 < 0.04
    full = table.seed_row("full", [_row("x", [v]) for v in (0.6, 0.6, 0.6)], seeds)
    gains = table.gains([full, pce, big, small])
    assert set(gains) == {"pce+crf", "pce+potts"}
    assert gains["pce+crf"]["helps"] is True and gains["pce+crf"]["threshold"] == pytest.approx(0.04)
    assert gains["pce+potts"]["helps"] is False and gains["pce+potts"]["gain"] == pytest.approx(0.03)
    one = table.seed_row("pce", [_row("pce", [0.4])], [0])
    assert one["miou_std"] is None
    assert table.gains([one, table.seed_row("pce+crf", [_row("x", [0.5])], [0])])["pce+crf"]["helps"] is None


def test_results_header_records_provenance(tmp_path):
    table = _load("scribble_table")
    data = tmp_path / "d"
    (data / "images").mkdir(parents=True)
    (data / "images" / "a.png").write_bytes(b"x")
    header = table.results_header(data=str(data))
    assert {"machine", "versions", "command", "provenance"} <= set(header)
    prov = header["provenance"]
    assert {"git", "packages", "cpu", "math", "dataset_hash"} <= set(prov)
    assert "torch" in prov["packages"] and prov["dataset_hash"]["files"] == 1
    assert prov["math"]["torch_cpu_capability"]
