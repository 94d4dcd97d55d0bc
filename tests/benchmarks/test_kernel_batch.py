"""benchmarks/kernel_batch.py at toy size: it checks the batch and loop kernels agree before
timing them and writes every variant's CPU times with machine, versions and command."""
from __future__ import annotations

import json

import pytest
import torch

from tests.benchmarks.test_records import _load


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()  # the benchmark pins torch's threads for the process
    yield
    torch.set_num_threads(threads)


def test_kernel_batch_writes_every_variant(tmp_path):
    bench = _load("kernel_batch")
    out = tmp_path / "kb.json"
    assert bench.main(["--batch", "2", "--channels", "3", "--sizes", "12,16", "--repeats", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [r["size"] for r in record["results"]] == [12, 16]
    for row in record["results"]:
        assert set(row["median_cpu_s"]) == {"build_joint", "build_joined", "build_batch", "build_loop", "apply_batch", "apply_loop"}
        assert all(len(v) == 2 and min(v) >= 0 for v in row["cpu_s"].values())
        assert row["vertices"] > 0
    assert record["command"].startswith("python benchmarks/kernel_batch.py --batch 2")
    assert record["threads"] == 1 and "torch" in record["versions"]


@pytest.mark.parametrize("sizes", ["64,big", "", "0"])
def test_kernel_batch_rejects_bad_sizes(tmp_path, capsys, sizes):
    bench = _load("kernel_batch")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--sizes", sizes, "--out", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2 and "--sizes expects a comma list of integers >= 2" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
