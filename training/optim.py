"""Optimizer and learning-rate schedule: parameter groups, SGD / AdamW, poly with warm-up.

The schedule is a pure function of the step (as in nanoGPT's `get_lr`), so a resumed run needs
only the step number to continue it: no scheduler object, no scheduler state.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["build_optimizer", "lr_at", "set_lr"]


def lr_at(step: int, *, lr: float, steps: int, warmup_steps: int = 0, power: float = 0.9) -> float:
    """Learning rate of optimizer update `step` (0-based).

    Linear warm-up `lr * (step + 1) / warmup_steps` for the first `warmup_steps` updates, then
    poly decay `lr * (1 - t) ** power` with t = (step - warmup_steps) / (steps - warmup_steps),
    which reaches 0 after the last update.

    Raises:
        ValueError: `step` outside [0, steps) or `warmup_steps` outside [0, steps).
    """
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warmup_steps must be in [0, {steps}), got {warmup_steps!r}")
    if not 0 <= step < steps:
        raise ValueError(f"step must be in [0, {steps}), got {step!r}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (steps - warmup_steps)
    return lr * (1.0 - progress) ** power


def build_optimizer(
    model: nn.Module,
    *,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    backbone_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """SGD (Nesterov off, as DeepLab) or AdamW over up to four parameter groups.

    Groups: backbone / rest x decayed (conv and linear weights, ndim >= 2) / not decayed
    (norm weights and biases). Each group carries `lr_scale` (the backbone's is
    `backbone_lr_scale`, the rest 1); `set_lr` sets `lr = base * lr_scale` on every group.

    Args:
        model: a segmentation model; parameters under `model.backbone` form the backbone groups.
        name: "sgd" or "adamw".
        lr: base learning rate (groups start at `lr * lr_scale`).
        weight_decay: L2 (SGD) or decoupled (AdamW) weight decay of the decayed groups.
        momentum: SGD momentum (ignored by AdamW).
        backbone_lr_scale: learning-rate factor of the backbone.

    Raises:
        ValueError: unknown `name`.
    """
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            buckets.setdefault((id(p) in backbone_ids, p.ndim >= 2), []).append(p)
    groups = [
        {
            "params": params,
            "weight_decay": weight_decay if decayed else 0.0,
            "lr_scale": backbone_lr_scale if in_backbone else 1.0,
            "lr": lr * (backbone_lr_scale if in_backbone else 1.0),
        }
        for (in_backbone, decayed), params in sorted(buckets.items())
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to `lr * group["lr_scale"]`."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
