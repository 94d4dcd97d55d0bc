"""The training checkpoint (`last.pt`): everything `--resume` needs to continue exactly.

File layout (a `torch.save` zip of tensors and plain values only, so it loads with
`torch.load(weights_only=True)`, like the deployable checkpoint)::

    {"format": "wsdeploy-train-state", "version": 1,
     "step": int,                      # optimizer updates done
     "samples_per_rank": int,          # sampler position of every rank (step * batch * accum)
     "config": {...},                  # TrainConfig as plain values
     "classes": [str, ...],
     "model": {name: Tensor},          # unwrapped (no DDP "module." prefix)
     "optimizer": {...},               # optimizer.state_dict()
     "scaler": {...},                  # GradScaler.state_dict() ({} when fp16 is off)
     "rng": [per rank: {"torch": ByteTensor, "cuda": ByteTensor | None,
                        "numpy": {...}, "python": {...}}]}

The learning rate is a function of `step` (see `optim.lr_at`) and the data order a function of
the sampler position (see `data.ResumableSampler`), so neither needs more state.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsdeploy.checkpoint import atomic_torch_save, load_untrusted
from wsdeploy.training.config import TrainConfig, config_from_dict, config_to_dict

__all__ = [
    "capture_rng",
    "load_train_state",
    "read_train_config",
    "restore_rng",
    "save_train_state",
]

_FORMAT = "wsdeploy-train-state"
_VERSION = 1
_KEYS = ("step", "samples_per_rank", "config", "classes", "model", "optimizer", "scaler", "rng")


def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's random states (torch CPU, CUDA of `device`, numpy, Python) as tensors
    and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Restore what `capture_rng` recorded (the CUDA state only when both sides use CUDA)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))


def save_train_state(
    path: str | os.PathLike,
    *,
    step: int,
    samples_per_rank: int,
    config: TrainConfig,
    classes: list[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    rng: list[dict[str, Any]],
) -> None:
    """Write the training state atomically (temp file + rename); tensors moved to CPU.

    A write that fails (disk full, read-only folder) raises `OSError` naming the file and leaves
    the previous `last.pt` intact, so `--resume` loses at most one checkpoint interval.

    Args:
        model: the unwrapped model (not the DDP wrapper).
        rng: one `capture_rng()` dict per rank, in rank order.
    """
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "step": int(step),
        "samples_per_rank": int(samples_per_rank),
        "config": config_to_dict(config),
        "classes": list(classes),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _to_cpu(optimizer.state_dict()),
        "scaler": scaler.state_dict(),
        "rng": [_to_cpu(r) for r in rng],
    }
    atomic_torch_save(payload, path)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def load_train_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint written by `save_train_state` (CPU tensors).

    Raises:
        ValueError: missing file, not a training checkpoint (e.g. a deployable `model.pt`),
            a file needing arbitrary unpickling, a newer format version or missing entries.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training checkpoint not found: {str(path)!r}")
    payload = load_untrusted(path)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path}: not a training checkpoint (format {got!r}, expected {_FORMAT!r}); resume "
            "from the run's last.pt, not the deployable model.pt"
        )
    if not isinstance(payload.get("version"), int) or payload["version"] > _VERSION:
        raise ValueError(
            f"{path}: training checkpoint version {payload.get('version')!r} is not supported "
            f"(this wsdeploy reads up to {_VERSION})"
        )
    missing = [k for k in _KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path}: training checkpoint is missing {missing}")
    return payload


def read_train_config(path: str | os.PathLike) -> TrainConfig:
    """The `TrainConfig` stored in a training checkpoint (e.g. to resume with its settings)."""
    stored = load_train_state(path)["config"]
    try:
        return config_from_dict(stored)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
