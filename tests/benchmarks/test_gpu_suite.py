"""benchmarks/gpu_suite.py: the dry run (every section at toy size on the CPU) must run clean and
write the JSON a GPU run would write, so the suite cannot rot between the rare lent GPUs."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _suite():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # gpu_suite imports gpu_sections beside it
    try:
        spec = importlib.util.spec_from_file_location("bench_gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning", "ignore::DeprecationWarning")
def test_dry_run_runs_every_section(tmp_path):
    suite = _suite()
    out = tmp_path / "dry.json"
    threads = torch.get_num_threads()
    try:
        code = suite.main(["--dry-run", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    record = json.loads(out.read_text())
    errors = {k: v.get("error") for k, v in record["sections"].items() if v["status"] != "ok"}
    assert code == 0 and not errors, errors
    assert set(record["sections"]) == set(suite.SECTIONS)
    assert {"machine", "versions", "command", "device", "threads", "provenance", "targets"} <= set(record)
    assert "gpu_suite.py" in record["command"] and record["dry_run"] is True
    s = record["sections"]
    assert s["crf"]["cpu_fp32"]["median_ms"] > 0 and 0 <= s["crf"]["labels_agree_device_vs_cpu"] <= 1
    assert {"pce_only", "pce_plus_crf_scale_0.5", "pce_plus_crf_scale_1.0"} <= set(s["crf_loss"])
    assert s["cam"]["fp32"]["images_per_s"] > 0 and "median_ms" in s["cam"]["random_walk"]
    eager = s["inference"]["variants"]["eager_fp32"]
    assert eager["label_agreement_vs_eager_fp32"] == 1.0 and eager["batch_1"]["images_per_s"] > 0
    assert s["inference"]["variants"]["bf16_channels_last"]["label_agreement_vs_eager_fp32"] > 0.5
    assert set(s["compiled"]["variants"]) == {"torch_compile_bf16_channels_last", "pt2_exported_program"}
    assert s["compiled"]["variants"]["pt2_exported_program"]["label_agreement_vs_eager_fp32"] >= 0.999
    assert s["annotate"]["photos"] == 1 and set(s["annotate"]["methods"]) == {"default", "network"}
    for method in s["annotate"]["methods"].values():
        assert "error" not in method and method["median_s_per_photo"] > 0, method


def test_targets_are_read_from_the_sections():
    suite = _suite()
    results = {
        "crf": {"cuda_fp32": {"median_ms": 4.2}},
        "crf_loss": {"pce_only": {}, "pce_plus_crf_scale_0.5": {"overhead": 0.05}, "pce_plus_crf_scale_1.0": {"overhead": 0.2}},
        "inference": {"variants": {
            "eager_fp32": {"batch_16": {"images_per_s": 100.0}, "label_agreement_vs_eager_fp32": 1.0},
            "bf16_channels_last": {"batch_16": {"images_per_s": 350.0}, "label_agreement_vs_eager_fp32": 0.999},
        }},
        "compiled": {"variants": {
            "torch_compile_bf16_channels_last": {"batch_16": {"images_per_s": 500.0}, "label_agreement_vs_eager_fp32": 0.99},
        }},
    }
    t = suite.targets(results)
    assert t["crf_500x375x21x10_le_5ms"] == {"ms": 4.2, "met": True}
    assert t["crf_loss_overhead_le_10pct"]["met"] is False
    # the compiled path is faster but below 99.5% agreement, so bf16 + channels_last is the best path
    assert t["best_torch_path_ge_3x_eager_fp32_b16"] == {"variant": "bf16_channels_last", "speedup": 3.5, "met": True}
    assert suite.targets({})["crf_500x375x21x10_le_5ms"] is None
