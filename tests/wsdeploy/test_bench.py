"""`wsdeploy bench` at a tiny size: valid JSON with machine, versions, command and one row per
measurement; side-by-side variants; the library timing helper."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from wsdeploy.bench import time_calls
from wsdeploy.cli import bench as bench_cli

from tests.export.conftest import make_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wsdeploy bench")
    bench_cli.add_arguments(parser)
    return bench_cli.run(parser.parse_args(argv))


def test_bench_writes_valid_json(tmp_path, capsys):
    threads = torch.get_num_threads()
    ckpt = make_checkpoint(tmp_path / "m.pt", arch="lraspp_resnet18", width=8)
    out = tmp_path / "results" / "bench.json"
    try:
        code = _run([str(ckpt), "--backend", "torch,torch-channels_last", "--batch", "1,2", "--size", "64",
                     "--repeats", "2", "--warmup", "1", "--threads", "1", "--crf", "--device", "cpu", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    report = json.loads(out.read_text())
    assert {"command", "machine", "versions", "settings", "results", "exports"} <= set(report)
    assert report["command"].startswith("wsdeploy bench ") and "--batch 1,2" in report["command"]
    assert report["machine"]["cpu_count"] >= 1 and "torch" in report["versions"]
    rows = report["results"]
    # 2 variants x (2 batches x (model + end-to-end) + end-to-end with CRF at batch 1)
    assert len(rows) == 10 and sum(bool(r["crf"]) for r in rows) == 2 and {r["variant"] for r in rows} == {"torch", "torch-channels_last"}
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["throughput_ips"] > 0
        assert r["mode"] in ("model", "end_to_end") and len(r["loadavg_1m"]) == 2
    printed = capsys.readouterr().out
    assert "p50 ms" in printed and "p50 latency per image" in printed


def test_bench_rejects_unknown_variants(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", arch="lraspp_resnet18", width=8)
    with pytest.raises(ValueError, match="unknown --backend variant"):
        _run([str(ckpt), "--backend", "torch,tvm", "--size", "64"])
    with pytest.raises(ValueError, match="need --calibration"):
        _run([str(ckpt), "--backend", "onnxruntime-int8", "--size", "64"])


def test_time_calls_percentiles():
    timing = time_calls(lambda: sum(range(1000)), batch=4, warmup=1, repeats=5)
    assert timing.repeats == 5 and timing.p50_ms <= timing.p99_ms
    assert timing.throughput_ips == pytest.approx(4000.0 / timing.mean_ms)
    with pytest.raises(ValueError, match="repeats >= 1"):
        time_calls(lambda: None, batch=1, repeats=0)


def test_bench_takes_a_width_x_height_size(tmp_path):
    threads = torch.get_num_threads()
    ckpt = make_checkpoint(tmp_path / "m.pt", arch="lraspp_resnet18", width=8)
    out = tmp_path / "bench.json"
    try:
        assert _run([str(ckpt), "--backend", "torch", "--size", "96x64", "--repeats", "1", "--warmup", "0",
                     "--threads", "1", "--device", "cpu", "--out", str(out), "--no-plot"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    assert report["settings"]["size"] == "96x64" and "--size 96x64" in report["command"]
    assert {r["size"] for r in report["results"]} == {"96x64"}
    assert bench_cli._size("480x360") == (360, 480) and bench_cli._size("512") == (512, 512)
    with pytest.raises(argparse.ArgumentTypeError, match="WxH"):
        bench_cli._size("480x")
