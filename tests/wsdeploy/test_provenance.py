"""wsdeploy.provenance: git state, packages, CPU flags, kernel dispatch and the dataset hash."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import torch

from wsdeploy.provenance import (
    cpu_features,
    dataset_hash,
    git_state,
    installed_packages,
    math_libraries,
    provenance,
)

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
stepping\t: 1
microcode\t: 0xa10113e
flags\t\t: fpu pse sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_tile

processor\t: 1
vendor_id\t: SomethingElse
flags\t\t: fpu
"""


def _folder_dataset(root: Path) -> Path:
    """A tiny folder-layout dataset: 3 train ids, 1 val id, images/masks/scribbles."""
    for sub in ("images", "masks", "scribbles"):
        (root / sub).mkdir(parents=True)
        for i in ("a", "b", "c", "v"):
            (root / sub / f"{i}.png").write_bytes(f"{sub}-{i}".encode())
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("a\nb\nc\n")
    (root / "splits" / "val.txt").write_text("v\n")
    (root / "classes.txt").write_text("x\ny\n")
    (root / "dataset.json").write_text('{"command": "anything"}')
    return root


def test_dataset_hash_follows_its_documented_rule(tmp_path):
    root = _folder_dataset(tmp_path / "d")
    digests = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in root.rglob("*") if p.is_file() and p.name != "dataset.json"}
    lines = "".join(f"{key}\t{digests[key]}\n" for key in sorted(digests))
    expected = hashlib.sha256(lines.encode()).hexdigest()
    result = dataset_hash(root)
    assert result["sha256"] == expected
    assert result["files"] == 15 and result["bytes"] == sum(
        p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "dataset.json")
    assert result["splits"]["train"]["ids"] == 3 and result["splits"]["train"]["files"] == 3 * 3 + 2
    assert result["splits"]["val"]["files"] == 3 + 2


def test_dataset_hash_is_stable_and_sees_one_changed_byte(tmp_path):
    root = _folder_dataset(tmp_path / "d")
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, copy)
    (copy / "dataset.json").write_text('{"command": "something else"}')  # not data: ignored
    first, second = dataset_hash(root), dataset_hash(copy)
    assert first == second
    (copy / "images" / "v.png").write_bytes(b"images-w")  # one byte of one val image
    changed = dataset_hash(copy)
    assert changed["sha256"] != first["sha256"]
    assert changed["splits"]["val"]["sha256"] != first["splits"]["val"]["sha256"]
    assert changed["splits"]["train"]["sha256"] == first["splits"]["train"]["sha256"]


def test_dataset_hash_rejects_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        dataset_hash(tmp_path / "nope")


def test_cpu_features_reads_the_first_processor_and_its_isa_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    cpu = cpu_features(path)
    assert cpu["vendor"] == "AuthenticAMD" and cpu["model_name"] == "AMD EPYC 9R14"
    assert (cpu["family"], cpu["model"], cpu["stepping"]) == ("25", "17", "1")
    assert {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "fma", "f16c"} <= set(cpu["isa_flags"])
    assert not {"fpu", "pse"} & set(cpu["isa_flags"])
    assert cpu["flags_sha256"] is not None
    assert cpu_features(tmp_path / "missing")["isa_flags"] == []


def test_installed_packages_lists_the_whole_environment():
    packages = installed_packages()
    assert packages["torch"] == metadata.version("torch")
    assert packages["numpy"] == metadata.version("numpy")
    assert len(packages) > 10 and list(packages) == sorted(packages)


def test_math_libraries_names_torch_dispatch_and_overrides(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    info = math_libraries()
    assert info["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert all(len(line) < 400 for line in info["torch_build"])
    if torch.backends.mkldnn.is_available():
        assert any("DNN" in line for line in info["torch_build"])


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_commit_and_dirty_flag(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    assert git_state(tmp_path)["commit"] is None  # not a checkout yet
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "one")
    clean = git_state(tmp_path)
    assert clean["commit"] == git("rev-parse", "HEAD").strip() and clean["dirty"] is False
    assert clean["diff_sha256"] is None
    (tmp_path / "untracked.txt").write_text("ignored by the dirty flag")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    dirty = git_state(tmp_path / "code.py")  # a file inside the checkout works too
    assert dirty["dirty"] is True and dirty["changed"] == ["code.py"] and len(dirty["diff_sha256"]) == 64


def test_provenance_bundles_everything(tmp_path):
    root = _folder_dataset(tmp_path / "d")
    record = provenance(repo=tmp_path, data=root)
    assert set(record) == {"git", "packages", "cpu", "math", "dataset_hash"}
    assert record["dataset_hash"]["sha256"] == dataset_hash(root)["sha256"]
    assert "dataset_hash" not in provenance(repo=tmp_path)
