"""Atomic writes: the umask is never touched, modes follow it, failures leave the old file."""
from __future__ import annotations

import importlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import wsdeploy.atomic
from wsdeploy.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from wsdeploy.checkpoint import atomic_torch_save, load_untrusted

ROOT = Path(__file__).resolve().parents[2]


def test_import_and_writes_never_change_the_umask(tmp_path, monkeypatch):
    def forbidden(mask):
        raise AssertionError(f"os.umask({mask:o}) called: it races with other threads")

    monkeypatch.setattr(os, "umask", forbidden)
    importlib.reload(wsdeploy.atomic)
    wsdeploy.atomic.atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").read_text() == "x"


def test_new_files_get_the_mode_open_would_give(tmp_path):
    code = (
        "import os, sys, stat; from wsdeploy.atomic import atomic_write_text\n"
        "for umask in (0o022, 0o077, 0o002):\n"
        "    os.umask(umask); d = sys.argv[1] + '/' + oct(umask); os.mkdir(d)\n"
        "    atomic_write_text(d + '/atomic', 'a'); open(d + '/plain', 'w').close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=ROOT)
    for umask in (0o022, 0o077, 0o002):
        mode = lambda name: stat.S_IMODE((tmp_path / oct(umask) / name).stat().st_mode)  # noqa: E731
        assert mode("atomic") == mode("plain") == 0o666 & ~umask


def test_overwrite_keeps_the_existing_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_concurrent_writers_each_leave_a_whole_file(tmp_path):
    target = tmp_path / "shared.txt"
    payloads = [str(i) * 10_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write_text, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.txt"]


def test_an_exception_mid_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("previous")
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyError("boom")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_a_full_disk_gives_a_clear_oserror_and_keeps_the_previous_checkpoint(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write mid-file (EFBIG), as a full disk would."""
    target = tmp_path / "last.pt"
    atomic_torch_save({"w": torch.ones(3)}, target)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, old_limit[1]))
    try:
        with pytest.raises(OSError, match=r"File too large.*unchanged") as info:
            atomic_torch_save({"w": torch.zeros(100_000)}, target)
        assert info.value.filename == str(target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "\n" not in str(info.value) and "inline_container" not in str(info.value)
    torch.testing.assert_close(load_untrusted(target)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def _unprivileged(argv: list[str]) -> list[str]:
    """Root ignores folder permissions: drop the capabilities that let it (util-linux setpriv)."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", *argv]


def test_a_read_only_folder_gives_a_clear_permission_error(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "last.pt").write_bytes(b"previous")
    os.chmod(tmp_path, 0o755)
    folder.chmod(0o555)
    code = "import sys; from wsdeploy.atomic import atomic_write_bytes; atomic_write_bytes(sys.argv[1], b'new')"
    try:
        proc = subprocess.run(
            _unprivileged([sys.executable, "-c", code, str(folder / "last.pt")]), cwd=ROOT, capture_output=True,
            text=True,
        )
    finally:
        folder.chmod(0o755)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith("PermissionError:") and "read-only" in last, proc.stderr
    assert "last.pt" in last
    assert (folder / "last.pt").read_bytes() == b"previous"
