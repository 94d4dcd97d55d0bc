"""benchmarks/annotate_protocol.py: the choice on one folder, the CPU budget, the report on the
other, on hand-made results files (nothing is segmented here)."""
from __future__ import annotations

import json

import pytest

from tests.benchmarks.test_records import _load

GRABCUT = "OpenCV GrabCut (5 iterations, mask init)"


@pytest.fixture(scope="module")
def protocol():
    return _load("annotate_protocol")


def _row(name: str, sparse: float, dense: float, max_cpu: float, images: tuple[str, ...]) -> dict:
    def one(miou: float) -> dict:
        return {"miou": miou, "seed_std": 0.0, "per_seed": {"0": {"miou": miou, "per_image": dict.fromkeys(images, miou)}}}

    return {"name": name, "seeds": [0], "scribbles": one(sparse), "scribbles_dense": one(dense),
            "max_cpu_s_per_image": max_cpu}


def _results(data: str, rows: list[dict]) -> dict:
    return {"data": data, "methods": rows, "commands": [f"bench {data}"], "machine": {}, "versions": {}}


def test_the_budget_excludes_a_slow_row_and_the_choice_is_made_on_the_tuning_folder(protocol, tmp_path):
    a_img, b_img = ("a1", "a2"), ("b1",)
    a = _results("x/A", [_row("graphcut fast", 0.8, 0.9, 1.5, a_img), _row("graphcut slow", 0.9, 0.95, 2.5, a_img),
                         _row(GRABCUT, 0.6, 0.9, 1.0, a_img)])
    b = _results("x/B", [_row("graphcut fast", 0.7, 0.8, 1.9, b_img), _row("graphcut slow", 0.5, 0.99, 2.4, b_img),
                         _row(GRABCUT, 0.6, 0.85, 1.0, b_img)])
    assert protocol.choose(a, "graphcut")["name"] == "graphcut slow"
    assert protocol.choose(a, "graphcut", 2.0)["name"] == "graphcut fast"
    with pytest.raises(ValueError, match="took <= 1"):
        protocol.choose(a, "graphcut", 1.0)
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, res in zip(paths, (a, b)):
        path.write_text(json.dumps(res))
    out = tmp_path / "p.json"
    assert protocol.main(["--a", str(paths[0]), "--b", str(paths[1]), "--candidates", "graphcut",
                          "--max-cpu-s", "2", "--out", str(out)]) == 0
    p = json.loads(out.read_text())
    a_to_b, b_to_a = p["directions"]
    assert a_to_b["chosen"] == "graphcut fast"  # "slow" is better on A but over budget there
    assert a_to_b["score_on_reported_folder"] == {"scribbles": 0.7, "scribbles_dense": 0.8}
    assert a_to_b["max_cpu_s_per_image"] == {"chosen_folder": 1.5, "reported_folder": 1.9}
    assert b_to_a["chosen"] == "graphcut fast"  # on B "fast" is better anyway
    assert p["max_cpu_s"] == 2.0 and "2 CPU-s" in p["rule"]
    # pooled: every image weighs the same (2 of A, 1 of B)
    assert p["pooled"]["graphcut fast"]["scribbles"] == pytest.approx((0.8 * 2 + 0.7) / 3, abs=1e-4)
    assert p["pooled_minus_grabcut"]["graphcut fast"]["scribbles_dense"] == pytest.approx(
        (0.9 * 2 + 0.8) / 3 - (0.9 * 2 + 0.85) / 3, abs=1e-4)
