"""Trainer faults: kill -9 during a checkpoint write, a full disk, a read-only folder, a NaN step.

The promise: never more than one checkpoint interval of work lost, the previous last.pt always
intact, and non-finite gradients never reach the weights.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.test_trainer import dataset, tiny  # noqa: F401 - the module-scoped fixture

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["--model", "lraspp_resnet18", "--width", "8", "--crop-size", "32", "--batch-size", "2", "--steps", "6",
         "--workers", "0", "--log-every", "1", "--checkpoint-every", "2", "--lr", "0.02", "--warmup-steps", "1",
         "--device", "cpu", "--no-progress", "--no-tensorboard", "--seed", "3", "--val-split", ""]

# Run by a subprocess: the trainer, with the step-4 checkpoint write SIGKILLed half way through.
_KILL_MID_WRITE = """
import io, os, signal, sys
import wsdeploy.training.state as state
from wsdeploy.atomic import atomic_path
real = state.atomic_torch_save
def half_then_kill(payload, path):
    if payload["step"] != 4:
        return real(payload, path)
    buf = io.BytesIO(); state.torch.save(payload, buf); data = buf.getvalue()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
state.atomic_torch_save = half_then_kill
from wsdeploy.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _train_cli(args: list[str], code: str | None = None, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    head = ["-c", code] if code else ["-m", "wsdeploy"]
    return subprocess.run([*prefix, sys.executable, *head, "train", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, weights_only=True, map_location="cpu")
    return payload["state_dict"] if "state_dict" in payload else payload["model"]


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_then_resume_is_bit_exact(dataset, tmp_path):  # noqa: F811
    """`wsdeploy train` in a subprocess is SIGKILLed half way through writing the step-4 last.pt;
    resumed from the step-2 last.pt it left, the run ends bit-exactly where the uninterrupted one
    ends (weights of model.pt and last.pt, 1 thread everywhere)."""
    from wsdeploy.training import train

    train(tiny(dataset, tmp_path / "full", steps=6, val_split=""))  # the same run as FLAGS, uninterrupted

    crash_dir = tmp_path / "crash"
    crashed = _train_cli(["--data", str(dataset), "--out-dir", str(crash_dir), *FLAGS], code=_KILL_MID_WRITE)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    partial = list(crash_dir.glob(".last.pt.*.tmp"))
    assert len(partial) == 1 and not (crash_dir / "model.pt").exists()  # killed mid-write, before the rename
    assert torch.load(crash_dir / "last.pt", weights_only=True)["step"] == 2  # the last complete checkpoint

    train(tiny(dataset, crash_dir, steps=6, val_split=""), resume=crash_dir / "last.pt")
    for name in ("model.pt", "last.pt"):
        ref, got = _weights(tmp_path / "full" / name), _weights(crash_dir / name)
        assert ref.keys() == got.keys()
        for k in ref:
            assert torch.equal(ref[k], got[k]), f"{name}:{k} differs after kill -9 and --resume"


def _limit_file_size_for_step(trainer, monkeypatch, step: int, limit: int) -> None:
    real = trainer.save_train_state

    def save(path, **kwargs):
        if kwargs["step"] != step:
            return real(path, **kwargs)
        old = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))  # the kernel refuses the rest: EFBIG
        try:
            return real(path, **kwargs)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old)
            signal.signal(signal.SIGXFSZ, handler)

    monkeypatch.setattr(trainer, "save_train_state", save)


def test_a_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(dataset, tmp_path, monkeypatch):  # noqa: F811
    from wsdeploy.training import train, trainer

    config = tiny(dataset, tmp_path / "run", steps=4, val_split="")
    _limit_file_size_for_step(trainer, monkeypatch, step=4, limit=100_000)
    with pytest.raises(OSError, match=r"File too large.*unchanged.*last\.pt") as info:
        train(config)
    assert "\n" not in str(info.value) and info.value.filename == str(tmp_path / "run" / "last.pt")
    monkeypatch.undo()
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 2
    assert sorted(p.name for p in (tmp_path / "run").glob(".*.tmp")) == []  # the partial file is removed
    train(config, resume=tmp_path / "run" / "last.pt")  # and the run continues from it
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 4


@pytest.mark.slow
def test_a_read_only_output_folder_gives_a_clear_error(dataset, tmp_path):  # noqa: F811
    from tests.wsdeploy.test_atomic import _unprivileged

    from wsdeploy.training import train

    run = tmp_path / "run"
    train(tiny(dataset, run, steps=2, val_split=""))
    before = (run / "last.pt").read_bytes()
    os.chmod(tmp_path, 0o755)
    run.chmod(0o555)
    try:
        proc = _train_cli(["--data", str(dataset), "--out-dir", str(run), *FLAGS, "--resume", str(run / "last.pt")],
                          prefix=_unprivileged([]))
    finally:
        run.chmod(0o755)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith("wsdeploy train: error: permission denied: ") and str(run) in last, last
    assert (run / "last.pt").read_bytes() == before


def test_non_finite_gradients_stop_before_the_update(dataset, tmp_path, monkeypatch):  # noqa: F811
    from wsdeploy.training import train, trainer

    calls = {"n": 0}
    real = trainer.network_input

    def poisoned(images):
        calls["n"] += 1
        x = real(images)
        return x * float("nan") if calls["n"] == 3 else x  # the third step's input (batch of 2)

    monkeypatch.setattr(trainer, "network_input", poisoned)
    config = tiny(dataset, tmp_path / "run", steps=4, val_split="")
    with pytest.raises(FloatingPointError, match=r"non-finite gradients at step 3 \(loss terms \{'pce': nan.*"
                                                 r"last\.pt holds step 2"):
        train(config)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run" / "model.pt").exists()
